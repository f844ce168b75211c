-- Broadcasts to loudspeakers and e-boards (SPEC §9, Thông tư 39/2020/TT-BTTTT): the audio files,
-- the broadcasts, and one delivery per targeted device and occurrence.

CREATE TABLE media (
    id            text PRIMARY KEY,
    -- the file is stored under the media dir by this digest: uploading it twice keeps one copy
    sha256        text NOT NULL,
    content_type  text NOT NULL,
    duration_s    double precision NOT NULL,
    size_bytes    bigint NOT NULL,
    uploaded_by   text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE broadcasts (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    title         text NOT NULL,
    priority      text NOT NULL CHECK (priority IN ('normal', 'priority', 'emergency')),
    risk_level    smallint CHECK (risk_level BETWEEN 1 AND 5),
    media_id      text REFERENCES media (id),
    text          text,
    volume        smallint CHECK (volume BETWEEN 0 AND 100),
    -- as asked: {communes, villages, devices, kinds}; the devices they named are in deliveries
    targets       jsonb NOT NULL,
    -- the communes of the targeted devices: who may see the broadcast
    communes      text[] NOT NULL,
    starts_at     timestamptz NOT NULL,
    rrule         text,
    -- of the first occurrence; each occurrence lasts expires_at - starts_at
    expires_at    timestamptz NOT NULL CHECK (expires_at > starts_at),
    state         text NOT NULL
                  CHECK (state IN ('awaiting_approval', 'scheduled', 'active', 'finished', 'cancelled')),
    created_by    text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    approved_by   text,
    approved_at   timestamptz,
    cancelled_by  text,
    cancelled_at  timestamptz,
    -- the occurrence whose deliveries were made last (NULL: none yet)
    occurrence_at timestamptz,
    -- the occurrence the broadcast_not_reached alert was raised for
    alerted_for   timestamptz,
    CHECK (media_id IS NOT NULL OR text IS NOT NULL)
);
CREATE INDEX broadcasts_open ON broadcasts (state) WHERE state IN ('scheduled', 'active');
CREATE INDEX broadcasts_created ON broadcasts (created_at, id);

CREATE TABLE deliveries (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    broadcast_id   bigint NOT NULL REFERENCES broadcasts (id),
    device_id      text NOT NULL REFERENCES devices (id),
    commune_id     text NOT NULL,
    village_id     text,
    kind           text NOT NULL,
    occurrence_at  timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL,
    state          text NOT NULL DEFAULT 'scheduled'
                   CHECK (state IN ('scheduled', 'sent', 'accepted', 'playing', 'done',
                                    'failed', 'rejected', 'cancelled', 'expired')),
    reason         text,
    sent_at        timestamptz,
    attempts       integer NOT NULL DEFAULT 0,
    -- a `stop` the worker still owes the device (cancelled or preempted while it played)
    stop_owed      boolean NOT NULL DEFAULT false,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (broadcast_id, device_id, occurrence_at)
);
CREATE INDEX deliveries_open ON deliveries (device_id)
    WHERE state IN ('scheduled', 'sent', 'accepted', 'playing') OR stop_owed;
