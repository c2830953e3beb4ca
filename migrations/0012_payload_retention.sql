-- A delivery's payload (what its templates rendered) is what a retry or a fresh rendering needs;
-- once the email was sent or skipped, and `retention.payload` has passed, only its record is kept
-- (status, times, ids, attempts) until `retention.sent` or `retention.skipped`. The retention
-- task sets the payload to NULL then.
ALTER TABLE deliveries ALTER COLUMN payload DROP NOT NULL;

-- How far each housekeeping pass has got, so the next one starts there instead of walking again
-- through every row an earlier pass already handled. `payloads`: every sent or skipped delivery
-- last changed before `up_to` has had its payload removed.
CREATE TABLE housekeeping_marks (
    name  TEXT        PRIMARY KEY,
    up_to TIMESTAMPTZ NOT NULL
);
