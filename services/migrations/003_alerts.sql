-- Alerts for technicians: alerts and their history, rule settings edited through the API,
-- the notification outbox and its delivery log, and maintenance windows.

CREATE TABLE alerts (
    id                bigserial PRIMARY KEY,
    rule              text NOT NULL,
    device_id         text,                -- NULL for IOC-wide alerts ("IOC lost its broker")
    commune_id        text,
    village_id        text,
    kind              text,
    severity          text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    state             text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'acked', 'resolved')),
    message           text NOT NULL DEFAULT '',
    details           jsonb NOT NULL DEFAULT '{}',
    -- devices under this one (transitively) that are down with it: one incident, not many alerts
    affected          text[] NOT NULL DEFAULT '{}',
    -- when the condition began; opened_at is when its `for` duration had passed
    since             timestamptz NOT NULL,
    opened_at         timestamptz NOT NULL,
    acked_at          timestamptz,
    acked_by          text,
    ack_comment       text,
    resolved_at       timestamptz,
    resolved_by       text,                -- NULL: resolved by itself when the condition cleared
    assignee          text,
    assigned_at       timestamptz,
    notified_at       timestamptz,         -- last (re)notification, for repeats
    notify_count      integer NOT NULL DEFAULT 0,
    escalation_level  integer NOT NULL DEFAULT 0,
    updated_at        timestamptz NOT NULL DEFAULT now()
);
-- At most one unresolved alert per rule and device, whatever the evaluators do.
CREATE UNIQUE INDEX alerts_one_unresolved ON alerts (rule, coalesce(device_id, '')) WHERE state <> 'resolved';
CREATE INDEX alerts_state ON alerts (state, id);
CREATE INDEX alerts_device ON alerts (device_id, id);
CREATE INDEX alerts_commune ON alerts (commune_id, village_id, kind, id);
CREATE INDEX alerts_opened ON alerts (opened_at);

-- Every change of an alert, by whom: opened, notified, acked, assigned, escalated, resolved.
CREATE TABLE alert_history (
    id        bigserial PRIMARY KEY,
    alert_id  bigint NOT NULL REFERENCES alerts (id),
    at        timestamptz NOT NULL DEFAULT now(),
    action    text NOT NULL,
    actor     text,                        -- NULL: the evaluator
    details   jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX alert_history_alert ON alert_history (alert_id, id);

-- Rule settings edited by admins through the API; they override IOC_ALERTS_FILE rule by rule.
CREATE TABLE alert_config (
    id          boolean PRIMARY KEY DEFAULT true CHECK (id),
    rules       jsonb NOT NULL DEFAULT '{}',
    version     bigint NOT NULL DEFAULT 0,
    updated_at  timestamptz,
    updated_by  text
);
INSERT INTO alert_config (id) VALUES (true);

-- When a condition began, so that an evaluator taking over keeps counting `for` durations.
CREATE TABLE alert_conditions (
    rule       text NOT NULL,
    device_id  text NOT NULL,
    since      timestamptz NOT NULL,
    PRIMARY KEY (rule, device_id)
);

-- Notifications to send, written in the transaction that changes the alert (so none is lost)
-- and drained by a separate task (so a channel being down never blocks the evaluator).
CREATE TABLE alert_outbox (
    id          bigserial PRIMARY KEY,
    alert_id    bigint REFERENCES alerts (id),   -- NULL for a test message
    event       text NOT NULL,                   -- open, repeat, escalate, resolve, ack, assign, test
    -- 'route': asked for by the gateway, the evaluator turns it into one row per channel
    status      text NOT NULL DEFAULT 'pending'
                CHECK (status IN ('route', 'pending', 'sent', 'failed', 'cancelled')),
    channel     text,
    title       text NOT NULL DEFAULT '',
    body        text NOT NULL DEFAULT '',
    data        jsonb NOT NULL DEFAULT '{}',       -- named fields for template channels (Zalo ZNS)
    severity    text NOT NULL DEFAULT 'warning',
    created_at  timestamptz NOT NULL DEFAULT now(),
    not_before  timestamptz NOT NULL DEFAULT now(),  -- quiet hours, retry backoff
    attempts    integer NOT NULL DEFAULT 0,
    sent_at     timestamptz,
    last_error  text
);
CREATE INDEX alert_outbox_due ON alert_outbox (not_before, id) WHERE status IN ('pending', 'route');
CREATE INDEX alert_outbox_alert ON alert_outbox (alert_id);

-- Every delivery attempt, successful or not.
CREATE TABLE alert_deliveries (
    id           bigserial PRIMARY KEY,
    outbox_id    bigint NOT NULL REFERENCES alert_outbox (id),
    channel      text NOT NULL,
    at           timestamptz NOT NULL DEFAULT now(),
    ok           boolean NOT NULL,
    duration_ms  integer,
    error        text
);
CREATE INDEX alert_deliveries_outbox ON alert_deliveries (outbox_id);

-- Maintenance windows: a device, or a commune narrowed by village and/or kind; one-off
-- (starts_at..ends_at) or repeated by an RFC 5545 rrule (each occurrence as long as the first).
CREATE TABLE maintenance (
    id          bigserial PRIMARY KEY,
    commune_id  text NOT NULL REFERENCES communes (id),
    device_id   text REFERENCES devices (id),
    village_id  text,
    kind        text,
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz NOT NULL CHECK (ends_at > starts_at),
    rrule       text,
    reason      text NOT NULL DEFAULT '',
    created_by  text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz,
    deleted_by  text
);
CREATE INDEX maintenance_live ON maintenance (commune_id) WHERE deleted_at IS NULL;

-- The evaluator reads new device events in commit order.
CREATE INDEX device_events_seq_all ON device_events (seq);
