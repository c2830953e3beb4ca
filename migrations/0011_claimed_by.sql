-- Which worker holds a claim (its apalis worker name), so that a process that finds a worker dead
-- (and gives back its fetched jobs) also gives back the rows it claimed at once, instead of
-- leaving them to wait for their lease. Written with the claim token; lease recovery and every
-- outcome leave it behind, since only a row still `sending` under it is given back. No index:
-- `deliveries_active` already narrows a lookup to the rows being sent.
ALTER TABLE deliveries ADD COLUMN claimed_by TEXT;
