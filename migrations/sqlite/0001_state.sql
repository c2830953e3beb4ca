-- Herald's state in the embedded mode: the same tables as PostgreSQL's `herald` schema after its
-- migrations 0001–0014, in one file. Instants are TEXT in RFC 3339 with a `+00:00` offset (how
-- sqlx writes a `DateTime<Utc>`), which sort as they compare. Every instant a query compares is
-- bound from Rust; the defaults below (when a row was written) use the same format. Ids are
-- AUTOINCREMENT: an id is never given twice, as PostgreSQL's sequences never do (a Message-ID,
-- an outcome or an operator's link names a delivery by it).

CREATE TABLE batches (
    key        TEXT    PRIMARY KEY,
    provider   TEXT    NOT NULL,
    size       INTEGER NOT NULL CHECK (size > 0),
    created_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now'))
);

CREATE TABLE deliveries (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    kind           TEXT    NOT NULL,
    user_id        TEXT    NOT NULL,
    dedup_key      TEXT    NOT NULL UNIQUE,
    status         TEXT    NOT NULL DEFAULT 'queued'
                   CHECK (status IN ('queued', 'sending', 'sent', 'failed', 'skipped')),
    payload        TEXT,
    recipient      TEXT    NOT NULL,
    attempts       INTEGER NOT NULL DEFAULT 0,
    round_attempts INTEGER NOT NULL DEFAULT 0,
    last_error     TEXT,
    provider       TEXT,
    message_id     TEXT,
    planned_for    TEXT    NOT NULL,
    due_at         TEXT    NOT NULL,
    dispatched_at  TEXT,
    lease_until    TEXT,
    sent_at        TEXT,
    created_at     TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    updated_at     TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    provider_id    TEXT,
    batch_key      TEXT    REFERENCES batches (key) ON DELETE SET NULL,
    claim_token    BLOB,
    held_by        TEXT,
    claimed_by     TEXT
);
CREATE INDEX deliveries_due ON deliveries (due_at) WHERE status = 'queued' AND dispatched_at IS NULL;
CREATE INDEX deliveries_dispatched ON deliveries (dispatched_at) WHERE status = 'queued' AND dispatched_at IS NOT NULL;
CREATE INDEX deliveries_lease ON deliveries (lease_until) WHERE status = 'sending';
CREATE INDEX deliveries_failed ON deliveries (updated_at) WHERE status = 'failed';
CREATE INDEX deliveries_sent_age ON deliveries (updated_at) WHERE status = 'sent';
CREATE INDEX deliveries_skipped_age ON deliveries (updated_at) WHERE status = 'skipped';
CREATE INDEX deliveries_finished_recent ON deliveries (updated_at, kind, provider, status)
    WHERE status IN ('sent', 'failed');
CREATE INDEX deliveries_active ON deliveries (status, due_at) WHERE status IN ('queued', 'sending');
CREATE INDEX deliveries_kind_planned ON deliveries (kind, planned_for);
CREATE INDEX deliveries_batch ON deliveries (batch_key) WHERE batch_key IS NOT NULL;
CREATE INDEX deliveries_provider_id ON deliveries (provider_id) WHERE provider_id IS NOT NULL;
CREATE INDEX deliveries_claimed_by ON deliveries (claimed_by) WHERE status = 'sending';

CREATE TABLE delivery_attempts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id INTEGER NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempt     INTEGER NOT NULL,
    at          TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    provider    TEXT    NOT NULL,
    outcome     TEXT    NOT NULL
                CHECK (outcome IN ('sent', 'transient', 'permanent', 'rate_limited', 'quota',
                                   'configuration', 'unknown')),
    code        INTEGER,
    error       TEXT
);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id, attempt);

CREATE TABLE email_opt_outs (
    user_id    TEXT NOT NULL,
    kind       TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    PRIMARY KEY (user_id, kind)
) WITHOUT ROWID;

CREATE TABLE housekeeping_marks (
    name  TEXT PRIMARY KEY,
    up_to TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE schedule_pauses (
    schedule  TEXT PRIMARY KEY,
    paused_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    reason    TEXT
) WITHOUT ROWID;

CREATE TABLE schedule_watermarks (
    schedule      TEXT PRIMARY KEY,
    planned_up_to TEXT NOT NULL,
    updated_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now'))
) WITHOUT ROWID;

CREATE TABLE suppressions (
    address     TEXT    PRIMARY KEY,
    reason      TEXT    NOT NULL,
    event       TEXT    NOT NULL,
    detail      TEXT,
    delivery_id INTEGER,
    created_at  TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now'))
) WITHOUT ROWID;

CREATE TABLE ui_session_key (
    one        INTEGER PRIMARY KEY CHECK (one = 1),
    key        TEXT    NOT NULL,
    rotated_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now'))
);

CREATE TABLE webhook_events (
    svix_id     TEXT    PRIMARY KEY,
    type        TEXT    NOT NULL,
    provider_id TEXT,
    delivery_id INTEGER,
    payload     TEXT    NOT NULL,
    received_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now'))
) WITHOUT ROWID;
CREATE INDEX webhook_events_delivery ON webhook_events (delivery_id) WHERE delivery_id IS NOT NULL;
CREATE INDEX webhook_events_received ON webhook_events (received_at);
