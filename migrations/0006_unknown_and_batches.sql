-- Once to the provider: the `unknown` outcome, batches kept whole across retries, and the
-- provider an ambiguous delivery is held to.

-- An attempt whose outcome Herald cannot tell (a timeout after the request left): the provider
-- may have taken the email.
ALTER TABLE delivery_attempts DROP CONSTRAINT delivery_attempts_outcome_check;
ALTER TABLE delivery_attempts ADD CONSTRAINT delivery_attempts_outcome_check
    CHECK (outcome IN ('sent', 'transient', 'permanent', 'rate_limited', 'quota', 'configuration',
                       'unknown'));

-- One row per batch request, written with its members' `deliveries.batch_key` BEFORE the
-- request goes out, so that a retry (after a failure, a timeout or a crash) sends the same
-- deliveries under the same idempotency key. Deleted when its last member leaves the batch.
CREATE TABLE batches (
    key        TEXT        PRIMARY KEY,
    provider   TEXT        NOT NULL,
    -- How many deliveries the request carried: a retry with fewer is not the same request.
    size       INTEGER     NOT NULL CHECK (size > 0),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Keys written by earlier versions (after a batch failed as a whole, always at Resend) stay the
-- same batch.
INSERT INTO batches (key, provider, size)
SELECT batch_key, 'resend', count(*) FROM deliveries WHERE batch_key IS NOT NULL GROUP BY batch_key;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_batch_key_fkey
    FOREIGN KEY (batch_key) REFERENCES batches (key) ON DELETE SET NULL;
CREATE INDEX deliveries_batch ON deliveries (batch_key) WHERE batch_key IS NOT NULL;

-- Set after an `unknown` outcome: the provider that may hold the email. Retries go to that
-- provider only (same idempotency key, same Message-ID), never to the next one.
ALTER TABLE deliveries ADD COLUMN held_by TEXT;
