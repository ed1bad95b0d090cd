-- Hearth schema version 2: family members (invitations, the toys granted
-- to relatives, last sign-in) and the household ledger's vocabulary
-- (snake_case actions, the toy and the client address of each entry).

CREATE TABLE relative_toys (
    user_id         INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    toy             INTEGER NOT NULL REFERENCES toys(id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, toy)
);

CREATE TABLE invites (
    id              INTEGER PRIMARY KEY,
    public_id       TEXT    NOT NULL UNIQUE,
    -- SHA-256 of the code's eight digits; the code itself is never stored.
    code_hash       BLOB    NOT NULL UNIQUE,
    role            TEXT    NOT NULL CHECK (role IN ('parent', 'relative')),
    created_by      TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    used_at         INTEGER,
    used_by         TEXT,
    revoked_at      INTEGER
);

CREATE TABLE invite_toys (
    invite          INTEGER NOT NULL REFERENCES invites(id) ON DELETE CASCADE,
    toy             INTEGER NOT NULL REFERENCES toys(id) ON DELETE CASCADE,
    PRIMARY KEY (invite, toy)
);

ALTER TABLE users ADD COLUMN last_sign_in INTEGER;

ALTER TABLE audit ADD COLUMN toy TEXT;
ALTER TABLE audit ADD COLUMN client TEXT NOT NULL DEFAULT '';

-- Entries about toys name the toy in its own column (for the toy filter).
UPDATE audit SET toy = subject
 WHERE action IN ('pairing.request', 'pairing.reveal', 'pairing.confirm', 'pairing.reject', 'toy.remove');

-- Version 1 spelled actions with dots; the ledger's vocabulary is snake_case.
UPDATE audit SET action = CASE
    WHEN action = 'password.change' THEN 'password_changed'
    WHEN action = 'pairing.request' THEN 'pairing_requested'
    WHEN action = 'pairing.reveal' THEN 'pairing_revealed'
    WHEN action = 'pairing.confirm' AND outcome = 'success' THEN 'toy_paired'
    WHEN action = 'pairing.confirm' THEN 'pairing_code_wrong'
    WHEN action = 'pairing.reject' THEN 'pairing_rejected'
    WHEN action = 'toy.remove' THEN 'toy_removed'
    ELSE action
END;

CREATE INDEX audit_at ON audit(at);
