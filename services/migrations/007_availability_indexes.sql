-- Availability reports over thousands of devices: sums of a range of hours or days read from
-- covering indexes (index-only scans), and the state changes of a time range found by time.
CREATE INDEX availability_hourly_cover ON availability_hourly (hour)
    INCLUDE (device_id, online_s, offline_s, maintenance_s, unknown_s);
CREATE INDEX availability_daily_cover ON availability_daily (day)
    INCLUDE (device_id, online_s, offline_s, maintenance_s, unknown_s);
CREATE INDEX state_changes_at ON state_changes (at);
