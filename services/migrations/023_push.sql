-- Pushes to the province (IOC_UPSTREAMS_FILE) and to NGSI-LD subscribers (SPEC §10): one outbox for
-- every target, delivered in order per target, at least once, kept across restarts and outages.

-- One row per target: 'upstream:<id>' or 'ngsi:<subscription id>'.
CREATE TABLE push_targets (
    target           text PRIMARY KEY,
    -- The last seq handed out. Enqueue takes it with UPDATE ... RETURNING: the row lock is held until
    -- the enqueuing transaction commits, so per target seq is gap-free and in commit order (a
    -- bigserial is not: a row committed late with a lower id would be passed by the deliverer).
    next_seq         bigint NOT NULL DEFAULT 0,
    -- an upstream still named in IOC_UPSTREAMS_FILE (NGSI-LD targets: always true)
    configured       boolean NOT NULL DEFAULT true,
    -- an upstream's `communes:` (NULL: all), for its backlog of changes not queued yet
    communes         text[],
    last_success_at  timestamptz,
    last_error       text,
    last_error_at    timestamptz,
    -- for /metrics, exact across restarts
    delivered_total  bigint NOT NULL DEFAULT 0,
    failures_total   bigint NOT NULL DEFAULT 0,
    dead_total       bigint NOT NULL DEFAULT 0
);

CREATE TABLE push_outbox (
    target           text NOT NULL REFERENCES push_targets (target) ON DELETE CASCADE,
    seq              bigint NOT NULL,
    -- json, not jsonb: the exact text to POST, the same bytes on every retry
    body             json NOT NULL,
    items            integer NOT NULL DEFAULT 1,
    -- the communes whose data the row carries (NULL: any), for the criteria report's count of pushes
    communes         text[],
    -- one key per row, sent on every attempt: the receiver drops a retry it has already taken
    idempotency_key  uuid NOT NULL DEFAULT gen_random_uuid(),
    created_at       timestamptz NOT NULL DEFAULT now(),
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts         integer NOT NULL DEFAULT 0,
    -- answers that refuse the row itself (a 4xx other than 401, 408, 409, 425, 429)
    refusals         integer NOT NULL DEFAULT 0,
    not_before       timestamptz NOT NULL DEFAULT now(),
    last_attempt_at  timestamptz,
    last_error       text,
    delivered_at     timestamptz,
    PRIMARY KEY (target, seq)
);
CREATE INDEX push_outbox_pending ON push_outbox (target, seq) WHERE status = 'pending';
CREATE INDEX push_outbox_delivered ON push_outbox (delivered_at) WHERE status = 'delivered';

-- Where each upstream's producers are in their sources: `changes` (state_changes.seq), `alerts`
-- (alert_changes position: xid, id), `daily_report` (the last local day sent).
CREATE TABLE push_cursors (
    upstream    text NOT NULL,
    stream      text NOT NULL CHECK (stream IN ('changes', 'alerts', 'daily_report')),
    pos         bigint NOT NULL DEFAULT 0,
    pos_xid     xid8 NOT NULL DEFAULT '0',
    day         date,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (upstream, stream)
);

-- Every change of an alert's shared row, with the writing transaction's id. A reader takes the rows
-- whose transaction is older than every transaction still running (pg_snapshot_xmin): those can no
-- longer change, whatever commits next, so a cursor on (xid, id) never skips one committed late —
-- without a lock that the evaluator and the gateway would queue on.
CREATE TABLE alert_changes (
    id        bigserial PRIMARY KEY,
    xid       xid8 NOT NULL DEFAULT pg_current_xact_id(),
    alert_id  bigint NOT NULL,
    at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alert_changes_pos ON alert_changes (xid, id);
CREATE INDEX alert_changes_at ON alert_changes (at);

CREATE FUNCTION alert_changes_log() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO alert_changes (alert_id) VALUES (NEW.id);
    RETURN NULL;
END $$;

CREATE TRIGGER alerts_log_insert AFTER INSERT ON alerts
    FOR EACH ROW EXECUTE FUNCTION alert_changes_log();
-- Only the columns /api/share/v1/alerts shows: a renotification (notified_at) is no change.
CREATE TRIGGER alerts_log_update AFTER UPDATE ON alerts
    FOR EACH ROW WHEN (
        (OLD.state, OLD.severity, OLD.message, OLD.affected, OLD.acked_at, OLD.resolved_at, OLD.updated_at,
         OLD.rule, OLD.device_id, OLD.since, OLD.opened_at)
        IS DISTINCT FROM
        (NEW.state, NEW.severity, NEW.message, NEW.affected, NEW.acked_at, NEW.resolved_at, NEW.updated_at,
         NEW.rule, NEW.device_id, NEW.since, NEW.opened_at)
    ) EXECUTE FUNCTION alert_changes_log();
