-- NGSI-LD subscriptions (SPEC §10, ETSI GS CIM 009 §5.8): a partner's key subscribes to changes of
-- Device entities and is notified by HTTP POST through the push outbox (targets 'ngsi:<id>').

CREATE TABLE ngsi_subscriptions (
    id                   text PRIMARY KEY,
    -- the key that created it: only that key sees or changes it, and its notifications carry only
    -- the devices of that key's communes and kinds (a revoked or expired key's are not sent)
    key_id               bigint NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    -- the subscription as the partner gave it, validated (status fields are the columns below)
    doc                  jsonb NOT NULL,
    -- the gateway's @context document as the partner reached it, for the notifications' Link header
    context_url          text NOT NULL,
    is_active            boolean NOT NULL DEFAULT true,
    expires_at           timestamptz,
    throttling_s         double precision,
    -- throttled: the devices changed since the last notification (sent, with their latest values,
    -- when the window ends), and when that notification was queued
    pending              text[] NOT NULL DEFAULT '{}',
    notified_at          timestamptz,
    -- NotificationParams' status (CIM 009 §5.2.13), kept by the push worker on each attempt
    times_sent           bigint NOT NULL DEFAULT 0,
    last_notification    timestamptz,
    last_success         timestamptz,
    last_failure         timestamptz,
    last_failure_reason  text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    modified_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ngsi_subscriptions_key ON ngsi_subscriptions (key_id, created_at, id);

-- Bumped by every create, update and delete: the producer reloads its subscriptions when it moves.
-- Apart from the cursor so that a partner's write never waits on the producer's row lock.
CREATE TABLE ngsi_subscriptions_version (
    id       boolean PRIMARY KEY DEFAULT true CHECK (id),
    version  bigint NOT NULL
);
INSERT INTO ngsi_subscriptions_version VALUES (true, 0);

-- Where the producer is in the live feed (feed.seq, gap-free in commit order), and the time of that
-- feed row (when the feed was pruned past the cursor, devices changed since then are notified).
CREATE TABLE ngsi_producer (
    id        boolean PRIMARY KEY DEFAULT true CHECK (id),
    feed_seq  bigint NOT NULL,
    feed_at   timestamptz NOT NULL DEFAULT now()
);
