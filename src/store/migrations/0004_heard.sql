-- Per-member heard state: which children's recordings (`from_toy`
-- messages) each member has heard. The message's own `state` stays the
-- household's ("received" until anyone hears it); this table is what
-- each member's "new" badges and unread counts read.

CREATE TABLE heard (
    user_id         INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    message         INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    at              INTEGER NOT NULL,
    PRIMARY KEY (user_id, message)
) WITHOUT ROWID;
CREATE INDEX heard_message ON heard(message);

-- Recordings the household heard before this version count as heard by
-- every member then present, so nobody's counts jump after the upgrade.
INSERT INTO heard (user_id, message, at)
SELECT u.id, m.id, m.created_at
  FROM users u, messages m
 WHERE m.direction = 'from_toy' AND m.state = 'heard';
