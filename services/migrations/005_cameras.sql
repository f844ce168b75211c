-- What the ONVIF poller learned of each camera: identity, media profiles, stream and snapshot
-- URIs (credentials stripped), for the dashboard. Written by the one active poller on change.
CREATE TABLE camera_media (
    device_id      text PRIMARY KEY REFERENCES devices (id),
    manufacturer   text,
    model          text,
    firmware       text,
    serial         text,
    hardware_id    text,
    -- [{token, name, encoding, width, height, stream_uri, snapshot_uri}]
    profiles       jsonb NOT NULL DEFAULT '[]',
    stream_uri     text,
    snapshot_uri   text,
    -- the HTTP auth scheme the snapshot endpoint accepted: some firmware does only Basic
    snapshot_auth  text CHECK (snapshot_auth IN ('digest', 'basic')),
    -- the camera offers PullPoint events (false: polled only)
    events         boolean,
    -- ONVIF service addresses by namespace, after NAT rewriting
    xaddrs         jsonb NOT NULL DEFAULT '{}',
    updated_at     timestamptz NOT NULL DEFAULT now()
);
