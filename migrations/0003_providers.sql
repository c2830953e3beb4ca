-- Providers: the id a provider gave each email, the batch a delivery was last sent in, and the
-- error classes of the shared taxonomy on every attempt.

-- Resend's id of the email (NULL for SMTP and the file outbox).
ALTER TABLE deliveries ADD COLUMN provider_id TEXT;
-- Set when a whole batch failed and will be retried: the retry claims the same deliveries
-- together, so the batch (and its idempotency key) is the same one.
ALTER TABLE deliveries ADD COLUMN batch_key TEXT;

ALTER TABLE delivery_attempts DROP CONSTRAINT delivery_attempts_outcome_check;
ALTER TABLE delivery_attempts ADD CONSTRAINT delivery_attempts_outcome_check
    CHECK (outcome IN ('sent', 'transient', 'permanent', 'rate_limited', 'quota', 'configuration'));
