-- Toys as characters (issue 15). `picture`: one of the built-in drawings
-- (`character::Picture`), NULL for the default derived from the toy id.
-- Quiet hours: minutes after local midnight, NULL until a parent sets
-- them; `quiet_on` says whether they apply (off keeps the times).
ALTER TABLE toys ADD COLUMN picture TEXT;
ALTER TABLE toys ADD COLUMN quiet_on INTEGER NOT NULL DEFAULT 0;
ALTER TABLE toys ADD COLUMN quiet_start INTEGER;
ALTER TABLE toys ADD COLUMN quiet_end INTEGER;
