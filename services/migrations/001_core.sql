-- Core schema: registry, device state, time series, live feed, dead letters.
CREATE EXTENSION IF NOT EXISTS timescaledb;

CREATE TABLE communes (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    district    text,
    province    text,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE villages (
    commune_id  text NOT NULL REFERENCES communes (id),
    id          text NOT NULL,
    name        text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (commune_id, id)
);

CREATE TABLE devices (
    id              text PRIMARY KEY,
    commune_id      text NOT NULL REFERENCES communes (id),
    village_id      text,
    kind            text NOT NULL CHECK (kind IN ('camera', 'speaker', 'eboard', 'wifi', 'gateway')),
    name            text,
    lat             double precision,
    lon             double precision,
    -- No foreign key: an import may name a parent defined later in the same file;
    -- the registry checks parents before it writes.
    parent_id       text,
    heartbeat_s     integer NOT NULL DEFAULT 60 CHECK (heartbeat_s > 0),
    -- host, port, username, path, poll_s; the password never goes here.
    onvif           jsonb,
    onvif_password  bytea,
    attrs           jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    retired_at      timestamptz,
    FOREIGN KEY (commune_id, village_id) REFERENCES villages (commune_id, id)
);
CREATE INDEX devices_commune ON devices (commune_id, village_id, kind);
CREATE INDEX devices_parent ON devices (parent_id) WHERE parent_id IS NOT NULL;

-- Bumped by every registry write so that running processes reload within seconds.
CREATE TABLE registry_version (
    id       boolean PRIMARY KEY DEFAULT true CHECK (id),
    version  bigint NOT NULL
);
INSERT INTO registry_version VALUES (true, 1);

CREATE TABLE device_state (
    device_id        text PRIMARY KEY REFERENCES devices (id),
    state            text NOT NULL DEFAULT 'unknown'
                     CHECK (state IN ('online', 'offline', 'unknown', 'maintenance', 'auth_failed')),
    since            timestamptz NOT NULL DEFAULT now(),
    -- receive time of the last status (liveness is measured on it, never on ts)
    last_seen        timestamptz,
    availability     text CHECK (availability IN ('online', 'offline')),
    availability_at  timestamptz,
    metrics          jsonb NOT NULL DEFAULT '{}',
    metrics_ts       timestamptz,
    reason           text,
    -- last_seen + the device's liveness window: when silence would make it offline. Lets the
    -- liveness sweep return only the devices that are due. Deliberately not indexed: an index
    -- on a column every status rewrites would make each update non-HOT.
    deadline         timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE status_samples (
    device_id    text NOT NULL,
    ts           timestamptz NOT NULL,
    received_at  timestamptz NOT NULL,
    metrics      jsonb NOT NULL
);
SELECT create_hypertable('status_samples', 'ts', chunk_time_interval => interval '1 day');
-- The idempotence key of a status (SPEC: device, channel, ts); includes the time column
-- as TimescaleDB requires of unique indexes.
CREATE UNIQUE INDEX status_samples_key ON status_samples (device_id, ts);

CREATE TABLE device_events (
    device_id    text NOT NULL,
    ts           timestamptz NOT NULL,
    received_at  timestamptz NOT NULL,
    type         text NOT NULL,
    severity     text NOT NULL DEFAULT 'info' CHECK (severity IN ('info', 'warning', 'critical')),
    message      text,
    fields       jsonb NOT NULL DEFAULT '{}',
    -- the live-feed seq of this event: commit-ordered, so event pages never skip a late row
    seq          bigint NOT NULL
);
SELECT create_hypertable('device_events', 'ts', chunk_time_interval => interval '7 days');
CREATE UNIQUE INDEX device_events_key ON device_events (device_id, ts, type);
CREATE INDEX device_events_seq ON device_events (device_id, seq);

-- Gap-free sequences in commit order. A row lock on the counter is taken as the last
-- statement of a writing transaction, so numbers are handed out in the order the
-- transactions commit (bigserial is not: a row committed late would be skipped by a
-- reader that already moved past its number).
CREATE TABLE counters (
    name   text PRIMARY KEY,
    value  bigint NOT NULL
);
INSERT INTO counters VALUES ('feed', 0), ('changes', 0);

-- Every state transition of a device, for /changes, reports and history.
CREATE TABLE state_changes (
    seq         bigint PRIMARY KEY,
    device_id   text NOT NULL,
    commune_id  text NOT NULL,
    village_id  text,
    kind        text NOT NULL,
    state       text NOT NULL,
    prev_state  text,
    at          timestamptz NOT NULL,
    reason      text
);
CREATE INDEX state_changes_device ON state_changes (device_id, at);
CREATE INDEX state_changes_commune ON state_changes (commune_id, seq);

-- The live feed that every gateway tails: one row per writing transaction holding
-- messages seq_first..seq_last, so a batch of thousands of statuses is one row.
CREATE TABLE feed (
    seq_first  bigint PRIMARY KEY,
    seq_last   bigint NOT NULL,
    at         timestamptz NOT NULL DEFAULT now(),
    -- json, not jsonb: written once, read back as text by gateways; no binary conversion
    items      json NOT NULL
);
CREATE INDEX feed_at ON feed (at);

CREATE TABLE dead_letters (
    id           bigserial,
    received_at  timestamptz NOT NULL,
    topic        text NOT NULL,
    reason       text NOT NULL,
    detail       text,
    device_id    text,
    payload      bytea,
    PRIMARY KEY (id, received_at)
);
SELECT create_hypertable('dead_letters', 'received_at', chunk_time_interval => interval '7 days');
CREATE INDEX dead_letters_reason ON dead_letters (reason, received_at);

-- Hourly availability per device, kept up to date incrementally from state_changes
-- (the Apache edition has no continuous aggregates).
CREATE TABLE availability_hourly (
    device_id      text NOT NULL,
    hour           timestamptz NOT NULL,
    online_s       double precision NOT NULL DEFAULT 0,
    offline_s      double precision NOT NULL DEFAULT 0,
    maintenance_s  double precision NOT NULL DEFAULT 0,
    unknown_s      double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (device_id, hour)
);
CREATE INDEX availability_hourly_hour ON availability_hourly (hour);

CREATE TABLE job_progress (
    name        text PRIMARY KEY,
    done_until  timestamptz NOT NULL
);

-- Liveness of the IOC's own processes (ingest hearing its broker, evaluator leases).
CREATE TABLE process_health (
    name        text PRIMARY KEY,
    kind        text NOT NULL,
    seen_at     timestamptz NOT NULL,
    info        jsonb NOT NULL DEFAULT '{}'
);

-- Counters exposed on /metrics by every gateway, updated inside the transactions they count
-- (so they are exact and survive restarts).
CREATE TABLE metric_counters (
    name   text NOT NULL,
    label  text NOT NULL DEFAULT '',
    value  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (name, label)
);
