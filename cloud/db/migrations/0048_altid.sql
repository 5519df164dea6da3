-- 0048: alternative identification with consent (issue #17 part 3, D29-J, docs/altid.md).
-- A pupil with a live consent for 'qr' or 'pin' gets a person key (the board derives the same
-- from the site key and the pupil number, people.id): SHA-256(site_key || 'qadam-altid-person:'
-- || id)[0:8]. It is kept as a row of cards, so the ingest maps the board's alt-id events to the
-- person exactly as a card's (attendance, meals, parents' notices), and altid_keys says which
-- cards rows are person keys: the whitelist compiler gives those records the method flags of the
-- live consents (protocol.md "Whitelist file", attributes bits 4-7) instead of treating them as
-- cards. A PIN is kept only as its site-keyed key, never in the clear.

CREATE TABLE altid_keys (
    person_id  bigint PRIMARY KEY REFERENCES people (id) ON DELETE CASCADE,
    card_key   text NOT NULL UNIQUE REFERENCES cards (card_key) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE altid_pins (
    person_id  bigint PRIMARY KEY REFERENCES people (id) ON DELETE CASCADE,
    -- SHA-256(site_key || 'qadam-altid-pin:' || person key || PIN)[0:8] as 16 hex digits
    pin_key    text NOT NULL CHECK (pin_key ~ '^[0-9a-f]{16}$'),
    set_by     bigint REFERENCES users (id),
    set_at     timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION altid_person_key(p_person bigint) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT substr(encode(sha256(s.site_key || convert_to('qadam-altid-person:' || p.id::text,
                                                         'UTF8')), 'hex'), 1, 16)
    FROM people p JOIN schools s ON s.id = p.school_id WHERE p.id = p_person;
$$;

-- The person key exists from the first consent for a method that needs it; every change of a
-- consent for 'qr' or 'pin' (given, withdrawn) marks the school's whitelist dirty, so the boards
-- get the flag or lose it with the next compile (withdrawal -> one whitelist update).
CREATE FUNCTION consents_altid() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    k text;
BEGIN
    IF NEW.method NOT IN ('qr', 'pin') THEN
        RETURN NULL;
    END IF;
    IF NEW.withdrawn_at IS NULL AND NOT EXISTS (SELECT 1 FROM altid_keys
                                                WHERE person_id = NEW.person_id) THEN
        k := altid_person_key(NEW.person_id);
        INSERT INTO cards (card_key, person_id) VALUES (k, NEW.person_id);
        INSERT INTO altid_keys (person_id, card_key) VALUES (NEW.person_id, k);
    END IF;
    PERFORM whitelist_mark_dirty((SELECT school_id FROM people WHERE id = NEW.person_id));
    RETURN NULL;
END
$$;
CREATE TRIGGER consents_altid AFTER INSERT OR UPDATE ON consents
    FOR EACH ROW EXECUTE FUNCTION consents_altid();

CREATE FUNCTION altid_pins_dirty() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM whitelist_mark_dirty((SELECT school_id FROM people
                                  WHERE id = COALESCE(NEW.person_id, OLD.person_id)));
    RETURN NULL;
END
$$;
CREATE TRIGGER altid_pins_dirty AFTER INSERT OR UPDATE OR DELETE ON altid_pins
    FOR EACH ROW EXECUTE FUNCTION altid_pins_dirty();

-- consents recorded before this migration
INSERT INTO cards (card_key, person_id)
SELECT DISTINCT altid_person_key(c.person_id), c.person_id FROM consents c
WHERE c.method IN ('qr', 'pin') AND c.withdrawn_at IS NULL
ON CONFLICT DO NOTHING;
INSERT INTO altid_keys (person_id, card_key)
SELECT DISTINCT c.person_id, altid_person_key(c.person_id) FROM consents c
WHERE c.method IN ('qr', 'pin') AND c.withdrawn_at IS NULL
ON CONFLICT DO NOTHING;
