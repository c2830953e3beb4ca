-- What comes back from the provider. A hard bounce or a complaint (Resend's webhooks), or an SMTP
-- server's permanent refusal of a mailbox, puts the address on the suppression list: the planner
-- and the claim skip it until an operator lifts it.
CREATE TABLE suppressions (
    -- Lowercased, as compared.
    address     TEXT        PRIMARY KEY,
    -- 'bounced' or 'complained'.
    reason      TEXT        NOT NULL,
    -- What said so first: the webhook event type or the SMTP answer, and its text.
    event       TEXT        NOT NULL,
    detail      TEXT,
    delivery_id BIGINT,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Every verified webhook, once: a replayed svix-id is a no-op.
CREATE TABLE webhook_events (
    svix_id     TEXT        PRIMARY KEY,
    type        TEXT        NOT NULL,
    provider_id TEXT,
    delivery_id BIGINT,
    payload     JSON        NOT NULL,
    received_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX webhook_events_delivery ON webhook_events (delivery_id) WHERE delivery_id IS NOT NULL;
CREATE INDEX webhook_events_received ON webhook_events (received_at);

-- Events find their delivery by the provider's id (Resend's email id).
CREATE INDEX deliveries_provider_id ON deliveries (provider_id) WHERE provider_id IS NOT NULL;
