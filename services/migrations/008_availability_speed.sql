-- ioc: no transaction
-- Availability reports and the rollup, faster.
-- The state of each device at a report's edges is read by index alone: the last change at or
-- before a time (and the first after it) without visiting the table or sorting ties by seq.
-- It serves every (device_id, at) lookup the index it replaces served.
-- Built CONCURRENTLY: ingest appends to state_changes while it builds. An interrupted run leaves
-- an invalid index of that name, dropped first when it runs again.
DROP INDEX CONCURRENTLY IF EXISTS state_changes_device_at;
CREATE INDEX CONCURRENTLY state_changes_device_at ON state_changes (device_id, at, seq) INCLUDE (state, prev_state);
DROP INDEX CONCURRENTLY IF EXISTS state_changes_device;
-- The covering indexes of 007 lead with the same column: these only cost every rollup write.
DROP INDEX CONCURRENTLY IF EXISTS availability_hourly_hour;
DROP INDEX CONCURRENTLY IF EXISTS availability_daily_day;
