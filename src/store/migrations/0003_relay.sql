-- The relay (RELAY.md): the mailbox settings, shares, objects still to
-- delete from the mailbox, and replies awaiting a parent's approval.
-- The mailbox's secret key is not here: it is the 0600 file relay-secret.

CREATE TABLE relay_settings (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    endpoint        TEXT    NOT NULL,
    region          TEXT    NOT NULL,
    bucket          TEXT    NOT NULL,
    prefix          TEXT    NOT NULL,
    path_style      INTEGER NOT NULL,
    access_key_id   TEXT    NOT NULL,
    -- PEM of the CA of a self-hosted endpoint, when it has its own.
    ca_cert         TEXT,
    -- Seconds between two looks for replies.
    poll_seconds    INTEGER NOT NULL DEFAULT 30,
    updated_at      INTEGER NOT NULL
);

CREATE TABLE shares (
    id              INTEGER PRIMARY KEY,
    -- SID: 16 random bytes as 32 hex digits, the name of its objects.
    share_id        TEXT    NOT NULL UNIQUE,
    -- The shared message's public id; no foreign key: a share outlives a
    -- deleted message until its objects are gone from the mailbox.
    message_id      TEXT    NOT NULL,
    toy             INTEGER REFERENCES toys(id) ON DELETE SET NULL,
    contact         TEXT    NOT NULL,
    title           TEXT    NOT NULL,
    created_by      TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    replies_allowed INTEGER NOT NULL CHECK (replies_allowed BETWEEN 0 AND 3),
    -- Bit n-1 set: reply slot n was used.
    slots_used      INTEGER NOT NULL DEFAULT 0,
    -- The link secret K, kept only while the share is live.
    link_key        BLOB,
    -- The player object this share's link points at (p/HASH/index.html).
    player_key      TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('live', 'stopping', 'ended')),
    ended_at        INTEGER,
    end_reason      TEXT
);
CREATE INDEX shares_message ON shares(message_id);

CREATE TABLE relay_deletes (
    id              INTEGER PRIMARY KEY,
    -- The object's key under the prefix, e.g. s/SID/a.
    object_key      TEXT    NOT NULL UNIQUE,
    share_id        TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt    INTEGER NOT NULL,
    last_error      TEXT    NOT NULL DEFAULT ''
);

CREATE TABLE relay_replies (
    id              INTEGER PRIMARY KEY,
    public_id       TEXT    NOT NULL UNIQUE,
    share_id        TEXT    NOT NULL,
    toy             INTEGER REFERENCES toys(id) ON DELETE CASCADE,
    contact         TEXT    NOT NULL,
    slot            INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    duration_ms     INTEGER NOT NULL,
    size            INTEGER NOT NULL,
    peaks           BLOB    NOT NULL,
    -- Ogg Opus, already through the parent-to-toy chain (loudness, limiter).
    audio           BLOB    NOT NULL
);
