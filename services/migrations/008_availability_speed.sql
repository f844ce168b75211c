-- Availability reports and the rollup, faster.
-- The state of each device at a report's edges is read by index alone: the last change at or
-- before a time (and the first after it) without visiting the table or sorting ties by seq.
-- It serves every (device_id, at) lookup the index it replaces served.
CREATE INDEX state_changes_device_at ON state_changes (device_id, at, seq) INCLUDE (state, prev_state);
DROP INDEX state_changes_device;
-- The covering indexes of 007 lead with the same column: these only cost every rollup write.
DROP INDEX availability_hourly_hour;
DROP INDEX availability_daily_day;
