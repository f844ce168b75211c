-- The smart-commune criteria report and the 2025 reform (issue 17): since 1 July 2025 one commune
-- often spans several former communes; a village keeps the name of the one it belonged to, for
-- filters and report groups. (Pulls by partners' keys, which the criteria count, are already in
-- audit_log: nothing more to record for them.)
ALTER TABLE villages ADD COLUMN former_commune text;
