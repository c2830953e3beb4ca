-- What PostgreSQL does for each planned delivery bounds a big fire: 1,000,000 weekly reports
-- insert 1,000,000 rows, and each costs a heap tuple, its WAL and five index entries
-- (BENCHMARKS.md, "Inserting a million deliveries").
--
-- The payload is stored as plain text. The planner writes it once, serialized by Herald itself,
-- and the workers and the dashboard read it back whole; nothing queries inside it. As `json`,
-- PostgreSQL parsed every payload on the way in (7 % of the insert's CPU time, `perf`).
-- Whoever wants to look inside casts it, as Herald's claim and dashboard do:
-- `payload::json ->> 'at'`.
--
-- Dedup keys are compared byte by byte (collation "C"): they are only ever compared for
-- equality, or by their 'manual:' prefix (which "C" lets the unique index serve), so the
-- database's collation (strcoll) bought nothing on the dozens of comparisons each insert makes
-- in the unique index.
--
-- One statement, so the table is rewritten once (there is no binary cast from json to text),
-- its indexes with it.
ALTER TABLE deliveries
    ALTER COLUMN payload TYPE text,
    ALTER COLUMN dedup_key TYPE text COLLATE "C";
