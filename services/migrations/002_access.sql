-- Operators, sessions, district API keys and the audit log.
CREATE TABLE users (
    id             bigserial PRIMARY KEY,
    username       text NOT NULL UNIQUE,
    password_hash  text NOT NULL,
    role           text NOT NULL CHECK (role IN ('admin', 'operator', 'technician', 'viewer')),
    communes       text[],            -- NULL: every commune
    created_at     timestamptz NOT NULL DEFAULT now(),
    disabled_at    timestamptz,
    failed_logins  integer NOT NULL DEFAULT 0,
    locked_until   timestamptz
);

CREATE TABLE sessions (
    token_hash    bytea PRIMARY KEY,  -- sha256 of the token; the token itself is never stored
    user_id       bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL
);
CREATE INDEX sessions_expires ON sessions (expires_at);

CREATE TABLE api_keys (
    id            bigserial PRIMARY KEY,
    name          text NOT NULL,
    prefix        text NOT NULL,      -- first characters, shown in lists to tell keys apart
    key_hash      bytea NOT NULL UNIQUE,
    communes      text[],             -- NULL: every commune
    kinds         text[],             -- NULL: every kind
    rate_per_min  integer NOT NULL DEFAULT 600,
    expires_at    timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz
);

-- Fixed-window rate limit counters shared by every gateway.
CREATE TABLE rate_windows (
    key_id        bigint NOT NULL,
    window_start  timestamptz NOT NULL,
    count         integer NOT NULL,
    PRIMARY KEY (key_id, window_start)
);

CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor_kind  text NOT NULL CHECK (actor_kind IN ('user', 'key', 'system')),
    actor       text NOT NULL,
    action      text NOT NULL,
    params      jsonb NOT NULL DEFAULT '{}',
    status      integer,
    rows        integer
);
CREATE INDEX audit_log_at ON audit_log (at);
