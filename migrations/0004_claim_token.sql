-- Fenced claims: each claim writes a fresh token; a worker records its attempt, or renews its
-- lease, only while the row still carries its token. Lease recovery clears it, so a worker whose
-- lease ran out can no longer overwrite what the next owner of the row does.
ALTER TABLE deliveries ADD COLUMN claim_token UUID;
