-- MQTT accounts for Mosquitto: one per device (username = device id) plus the IOC's own
-- account `ioc` (device_id NULL). Only the hash is kept; `ioc mqtt-auth` writes the
-- password and ACL files from this table and the registry.
CREATE TABLE mqtt_accounts (
    username       text PRIMARY KEY,
    device_id      text UNIQUE REFERENCES devices (id),
    -- Mosquitto 2.0's own form ($7$: PBKDF2-SHA512), copied verbatim into its password file.
    password_hash  text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    rotated_at     timestamptz
);
