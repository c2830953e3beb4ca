-- The app's data that Herald reads, and Herald's own record of every email.

CREATE TABLE users (
    id           BIGSERIAL PRIMARY KEY,
    email        TEXT        NOT NULL UNIQUE,
    display_name TEXT        NOT NULL,
    -- An IANA zone name such as 'Europe/Paris'. Checked in Rust, not here, so that a bad value
    -- written by the app degrades one user's email instead of rejecting the write.
    timezone     TEXT        NOT NULL DEFAULT 'UTC',
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE tasks (
    id           BIGSERIAL PRIMARY KEY,
    owner_id     BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title        TEXT        NOT NULL,
    due_at       TIMESTAMPTZ,
    completed_at TIMESTAMPTZ,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX tasks_owner_due ON tasks (owner_id, due_at) WHERE completed_at IS NULL;
CREATE INDEX tasks_owner_completed ON tasks (owner_id, completed_at) WHERE completed_at IS NOT NULL;

CREATE TABLE focus_sessions (
    id         BIGSERIAL PRIMARY KEY,
    owner_id   BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    started_at TIMESTAMPTZ NOT NULL,
    minutes    INTEGER     NOT NULL CHECK (minutes >= 0)
);
CREATE INDEX focus_sessions_owner_started ON focus_sessions (owner_id, started_at);

-- One row per user and email kind that the user does not want.
CREATE TABLE email_opt_outs (
    user_id    BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind       TEXT        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, kind)
);

-- The system of record for every planned email. Redis only ever holds ids of rows that are due.
CREATE TABLE deliveries (
    id             BIGSERIAL PRIMARY KEY,
    kind           TEXT        NOT NULL,
    user_id        BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- schedule : user : the tick's local date. Makes planning idempotent.
    dedup_key      TEXT        NOT NULL UNIQUE,
    status         TEXT        NOT NULL DEFAULT 'queued'
                   CHECK (status IN ('queued', 'sending', 'sent', 'failed', 'skipped')),
    -- Everything the templates need, captured when the email was planned.
    payload        JSONB       NOT NULL,
    recipient      TEXT        NOT NULL,
    attempts       INTEGER     NOT NULL DEFAULT 0,
    -- Attempts since the email was planned or last retried by an operator; drives the backoff.
    round_attempts INTEGER     NOT NULL DEFAULT 0,
    last_error     TEXT,
    provider       TEXT,
    message_id     TEXT,
    planned_for    TIMESTAMPTZ NOT NULL,
    due_at         TIMESTAMPTZ NOT NULL,
    -- Set when the id was pushed to Redis; NULL while the row waits for the dispatcher.
    dispatched_at  TIMESTAMPTZ,
    -- While 'sending': when a crashed worker's claim expires and the row becomes due again.
    lease_until    TIMESTAMPTZ,
    sent_at        TIMESTAMPTZ,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- The dispatcher's scan: due rows not yet in Redis.
CREATE INDEX deliveries_due ON deliveries (due_at) WHERE status = 'queued' AND dispatched_at IS NULL;
CREATE INDEX deliveries_dispatched ON deliveries (dispatched_at) WHERE status = 'queued' AND dispatched_at IS NOT NULL;
CREATE INDEX deliveries_lease ON deliveries (lease_until) WHERE status = 'sending';
CREATE INDEX deliveries_failed ON deliveries (updated_at) WHERE status = 'failed';

CREATE TABLE delivery_attempts (
    id          BIGSERIAL PRIMARY KEY,
    delivery_id BIGINT      NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempt     INTEGER     NOT NULL,
    at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    provider    TEXT        NOT NULL,
    outcome     TEXT        NOT NULL CHECK (outcome IN ('sent', 'transient', 'permanent')),
    code        INTEGER,
    error       TEXT
);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id, attempt);
