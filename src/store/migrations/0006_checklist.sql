-- The first-run checklist on an admin's home page: what each member ticked
-- themselves (trusting the hub's certificate, which only their phone can
-- know), whether they put the list away, and that it was once complete
-- (so a ledger entry pruned later cannot bring it back).

CREATE TABLE checklist_marks (
    user_id         INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    mark            TEXT    NOT NULL CHECK (mark IN ('certificate_trusted', 'dismissed', 'completed')),
    at              INTEGER NOT NULL,
    PRIMARY KEY (user_id, mark)
) WITHOUT ROWID;
