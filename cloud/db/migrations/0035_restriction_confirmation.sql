-- 0035: the school's confirmation of a child's allergen restrictions (issue #16, decision D28-G).
--
-- allergen_restrictions.allergens/allergen_mask stay what the canteen board enforces (mirrored
-- into people.allergen_mask, so the whitelist carries it). A guardian's change is split:
-- * what it ADDS is enforced at once (safety first: a new allergy must not wait for an office);
-- * what it REMOVES waits for the school: the guardian's wanted list is kept in `requested_*`
--   until a school admin confirms it (then it becomes the enforced list) or declines it.
-- `confirmed_at`/`confirmed_by`: the school's last confirmation of the enforced list; NULL when
-- a guardian changed it since (the school has not seen it yet).
ALTER TABLE allergen_restrictions
    ADD COLUMN requested_allergens text[],
    ADD COLUMN requested_mask integer CHECK (requested_mask BETWEEN 0 AND 65535),
    ADD COLUMN requested_by bigint REFERENCES users (id),
    ADD COLUMN requested_at timestamptz,
    ADD COLUMN confirmed_by bigint REFERENCES users (id),
    ADD COLUMN confirmed_at timestamptz,
    ADD CHECK ((requested_mask IS NULL) = (requested_allergens IS NULL)
               AND (requested_mask IS NULL) = (requested_at IS NULL)),
    -- a pending request only ever removes: what it adds is enforced already
    ADD CHECK (requested_mask IS NULL OR requested_mask & ~allergen_mask = 0),
    ADD CHECK ((confirmed_at IS NULL) = (confirmed_by IS NULL));

-- the rows set before the school confirmed anything: confirmed by whoever set them (an admin
-- through the API, or a guardian before this migration: the school saw them on its lists)
UPDATE allergen_restrictions SET confirmed_by = set_by, confirmed_at = updated_at
WHERE set_by IS NOT NULL;

-- a school admin's list of what waits for them
CREATE INDEX allergen_restrictions_unconfirmed_idx ON allergen_restrictions (person_id)
    WHERE confirmed_at IS NULL;
