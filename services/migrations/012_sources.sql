-- How devices that do not speak the IOC's MQTT are heard (SPEC §8): a device's `source`, the
-- MQTT brokers other than the IOC's own, and the profiles the registry defines.
--
-- `source` holds no secret: {"mqtt": {profile, id, broker}} | {"snmp": {host, port, version, user,
-- auth, priv, ...}} | {"ping": {...}} | {"tcp": {...}} | {"http": {url, ...}}. SNMP communities,
-- v3 keys and HTTP passwords are in `source_secret`, a vault token of a JSON object.
ALTER TABLE devices ADD COLUMN source jsonb;
ALTER TABLE devices ADD COLUMN source_secret bytea;
CREATE INDEX devices_source_broker ON devices ((source->'mqtt'->>'broker')) WHERE source ? 'mqtt';

CREATE TABLE mqtt_brokers (
    id               text PRIMARY KEY,
    -- scheme, host and port only: mqtt://host:1883 or mqtts://host:8883
    url              text NOT NULL,
    username         text,
    -- vault token; never returned by any API
    password_secret  bytea,
    client_id        text NOT NULL,
    -- a CA bundle for a broker whose certificate a private CA signed (path on the IOC's machine)
    ca_file          text,
    -- keepalive_s, session_expiry_s
    options          jsonb NOT NULL DEFAULT '{}',
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- Profiles the registry defines; they replace shipped ones and IOC_PROFILES_DIR files of the same name.
CREATE TABLE source_profiles (
    name        text PRIMARY KEY,
    body        jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
