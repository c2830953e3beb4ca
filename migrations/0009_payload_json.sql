-- A delivery's payload is stored as `json` (the text, checked to be JSON) rather than `jsonb`:
-- Herald writes it once when planning and reads it back whole to render the email, and never
-- queries inside it, so the conversion to jsonb and back was work on both sides for nothing
-- (planning 200,000 weekly reports: about 1 s of PostgreSQL's time in 3.8 s of inserts).
-- Payloads planned before this migration are converted in place.
ALTER TABLE deliveries ALTER COLUMN payload TYPE json USING payload::json;
