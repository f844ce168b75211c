-- Data sharing with the district: audit rows name the API key, availability rolls up per day
-- as well as per hour (30-day reports over thousands of devices stay fast), and jobs remember
-- the change-log position they reached.

ALTER TABLE audit_log ADD COLUMN key_id bigint;
CREATE INDEX audit_log_key ON audit_log (key_id, at) WHERE key_id IS NOT NULL;

-- Late-committed state changes (an `at` in an hour already rolled up) are found by seq.
ALTER TABLE job_progress ADD COLUMN done_seq bigint NOT NULL DEFAULT 0;

-- Sums of availability_hourly per UTC day; kept by the same job.
CREATE TABLE availability_daily (
    device_id      text NOT NULL,
    day            timestamptz NOT NULL,
    online_s       double precision NOT NULL DEFAULT 0,
    offline_s      double precision NOT NULL DEFAULT 0,
    maintenance_s  double precision NOT NULL DEFAULT 0,
    unknown_s      double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (device_id, day)
);
CREATE INDEX availability_daily_day ON availability_daily (day);

CREATE INDEX rate_windows_start ON rate_windows (window_start);
