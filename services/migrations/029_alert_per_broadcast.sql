-- One open alert per rule and device, and for alerts without a device (broadcast_not_reached) one per
-- broadcast: two emergencies not reached at once (a flood over two communes) are two alerts, where
-- the second used to wait for the first to resolve. Every `ON CONFLICT` on alerts names these
-- expressions (services/alerts/actor.py, services/broadcasts/alerting.py).
DROP INDEX alerts_one_unresolved;
CREATE UNIQUE INDEX alerts_one_unresolved ON alerts
    (rule, coalesce(device_id, ''), coalesce(details->>'broadcast', '')) WHERE state <> 'resolved';
