-- Audit rows name the communes they concern, so an admin limited to some communes reads only
-- theirs. NULL: deployment-wide (a key of every commune asking for all, alert rules, calls
-- without a valid key, and every row written before this column existed) — read only by
-- admins of every commune.
ALTER TABLE audit_log ADD COLUMN communes text[];
