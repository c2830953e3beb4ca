-- Example host app: a Laravel app on MariaDB (the tables as its migrations create them with
-- `$table->id()`, `foreignId()->constrained()`, `timestamps()` and `softDeletes()`). The app runs
-- with config('app.timezone') = 'UTC', so every DATETIME/TIMESTAMP below holds UTC.
-- Herald never writes to these tables; see views.sql.

CREATE TABLE users (
    id                BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    name              VARCHAR(255) NOT NULL,
    email             VARCHAR(255) NOT NULL,
    timezone          VARCHAR(64) NULL,       -- IANA name; NULL: the app's default, UTC
    locale            VARCHAR(16) NULL,       -- e.g. 'en', 'pt_BR' or 'pt-BR'
    email_verified_at TIMESTAMP NULL,
    password          VARCHAR(255) NOT NULL,
    remember_token    VARCHAR(100) NULL,
    created_at        TIMESTAMP NULL,
    updated_at        TIMESTAMP NULL,
    deleted_at        TIMESTAMP NULL,
    PRIMARY KEY (id),
    UNIQUE KEY users_email_unique (email)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE tasks (
    id           BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    user_id      BIGINT UNSIGNED NOT NULL,
    title        VARCHAR(255) NOT NULL,
    due_at       DATETIME NULL,
    completed_at DATETIME NULL,
    created_at   TIMESTAMP NULL,
    updated_at   TIMESTAMP NULL,
    deleted_at   TIMESTAMP NULL,
    PRIMARY KEY (id),
    KEY tasks_user_id_due_at_index (user_id, due_at),
    KEY tasks_due_at_index (due_at),                -- Herald's due_soon reads tasks falling due
    CONSTRAINT tasks_user_id_foreign FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE focus_sessions (
    id         BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    user_id    BIGINT UNSIGNED NOT NULL,
    started_at DATETIME NOT NULL,
    minutes    INT UNSIGNED NOT NULL,
    created_at TIMESTAMP NULL,
    updated_at TIMESTAMP NULL,
    PRIMARY KEY (id),
    KEY focus_sessions_user_id_started_at_index (user_id, started_at),
    CONSTRAINT focus_sessions_user_id_foreign FOREIGN KEY (user_id) REFERENCES users (id)
        ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
