-- Hearth schema version 1. Times are Unix seconds (UTC).

CREATE TABLE household (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    name            TEXT    NOT NULL,
    -- Days messages are kept; NULL keeps them forever.
    retention_days  INTEGER DEFAULT 30,
    created_at      INTEGER NOT NULL
);

CREATE TABLE users (
    id              INTEGER PRIMARY KEY,
    username        TEXT    NOT NULL UNIQUE,
    display_name    TEXT    NOT NULL,
    role            TEXT    NOT NULL CHECK (role IN ('admin', 'parent', 'relative')),
    password_hash   TEXT    NOT NULL,
    created_at      INTEGER NOT NULL
);

CREATE TABLE sessions (
    id              INTEGER PRIMARY KEY,
    -- SHA-256 of the secret token; the token itself is never stored.
    token_hash      BLOB    NOT NULL UNIQUE,
    user_id         INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    kind            TEXT    NOT NULL CHECK (kind IN ('cookie', 'bearer')),
    csrf_token      TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    last_seen       INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    user_agent      TEXT    NOT NULL DEFAULT '',
    client_ip       TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX sessions_user ON sessions(user_id);

CREATE TABLE toys (
    id              INTEGER PRIMARY KEY,
    toy_id          TEXT    NOT NULL UNIQUE,
    name            TEXT    NOT NULL,
    model           TEXT    NOT NULL DEFAULT '',
    -- SHA-256 of the toy's SubjectPublicKeyInfo (hex) and of its current
    -- client certificate (DER): only that certificate is accepted.
    key_fp          TEXT    NOT NULL,
    cert_sha256     BLOB,
    paired_at       INTEGER NOT NULL,
    -- Set when a parent removed the toy; its certificate is refused.
    removed_at      INTEGER,
    last_seen       INTEGER,
    battery         INTEGER,
    firmware        TEXT,
    child_name      TEXT
);

CREATE TABLE messages (
    id              INTEGER PRIMARY KEY,
    public_id       TEXT    NOT NULL UNIQUE,
    toy             INTEGER NOT NULL REFERENCES toys(id) ON DELETE CASCADE,
    direction       TEXT    NOT NULL CHECK (direction IN ('to_toy', 'from_toy')),
    sender_user     INTEGER REFERENCES users(id) ON DELETE SET NULL,
    sender_name     TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    duration_ms     INTEGER NOT NULL,
    size            INTEGER NOT NULL,
    state           TEXT    NOT NULL,
    keep            INTEGER NOT NULL DEFAULT 0,
    peaks           BLOB    NOT NULL,
    audio           BLOB    NOT NULL
);
CREATE INDEX messages_toy ON messages(toy, id);
CREATE INDEX messages_created ON messages(created_at);

CREATE TABLE idempotency (
    scope           TEXT    NOT NULL,
    key             TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    response        TEXT    NOT NULL,
    PRIMARY KEY (scope, key)
);

CREATE TABLE audit (
    id              INTEGER PRIMARY KEY,
    at              INTEGER NOT NULL,
    actor           TEXT,
    action          TEXT    NOT NULL,
    subject         TEXT,
    outcome         TEXT    NOT NULL,
    detail          TEXT    NOT NULL DEFAULT ''
);
