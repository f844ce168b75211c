-- What a commune calls its villages (ấp, xóm, thôn, bản, tổ dân phố…), when its registry says so
-- (`village_term:`); NULL: read from the villages' names (services/village_terms.py).
ALTER TABLE communes ADD COLUMN village_term text;
