-- The rollup rewrites the current hour of every device each minute. With the default scale factor
-- (20 % of the table) autovacuum reaches availability_hourly only every few hours at 5,000 devices,
-- and reports then visit the table for every recent row the visibility map does not cover yet.
ALTER TABLE availability_hourly SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 50000,
    autovacuum_analyze_scale_factor = 0,
    autovacuum_analyze_threshold = 50000
);
ALTER TABLE availability_daily SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 20000
);
