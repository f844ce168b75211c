-- Broadcasts also go out as text through the alert channels (Zalo OA, Apprise URLs; issue 16 item 5):
-- the channels a broadcast names, and its rows in the notification outbox, which sends, retries and
-- logs them (alert_deliveries) as it does alerts' notifications.

ALTER TABLE broadcasts ADD COLUMN channels text[] NOT NULL DEFAULT '{}';

ALTER TABLE alert_outbox ADD COLUMN broadcast_id bigint REFERENCES broadcasts (id);
ALTER TABLE alert_outbox ADD COLUMN occurrence_at timestamptz;
-- One text per channel and occurrence: a worker that runs a round again adds none.
CREATE UNIQUE INDEX alert_outbox_broadcast ON alert_outbox (broadcast_id, occurrence_at, channel)
    WHERE broadcast_id IS NOT NULL;
