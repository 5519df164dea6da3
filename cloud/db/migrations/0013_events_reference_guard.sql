-- 0013: events keep their school and person without per-row foreign-key checks (D18).
--
-- The two foreign keys on events (school_id -> schools, person_id -> people) cost about a quarter
-- of the database time of a replay flush: a lookup with a row lock per inserted event. What they
-- guarantee holds without them:
--   * on insert, the ingest statement takes school_id from the device's row and person_id from
--     the person's row in the same statement (cloud/ingest/writer.py), so both exist;
--   * afterwards, schools and people are never deleted (a person is deactivated, their events
--     stay) and their ids never change: the triggers below refuse both, with the foreign-key
--     error code, so nothing can leave an event pointing at nothing.
-- attendance, meal_receipts and the other tables keep their foreign keys (far fewer rows).

-- (named events_*_fkey1 or similar: 0002 renamed the first events table and kept its names)
DO $$
DECLARE
    c record;
BEGIN
    FOR c IN
        SELECT conname FROM pg_constraint
        WHERE conrelid = 'events'::regclass AND contype = 'f' AND conparentid = 0
          AND confrelid IN ('schools'::regclass, 'people'::regclass)
    LOOP
        EXECUTE format('ALTER TABLE events DROP CONSTRAINT %I', c.conname);
    END LOOP;
END
$$;

CREATE FUNCTION refuse_delete_or_rekey() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'TRUNCATE') THEN
        RAISE EXCEPTION '%: rows are never deleted (events refer to them; deactivate instead)',
            TG_TABLE_NAME USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF NEW.id IS DISTINCT FROM OLD.id THEN
        RAISE EXCEPTION '%: id never changes (events refer to it)', TG_TABLE_NAME
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER people_kept BEFORE DELETE OR UPDATE OF id ON people
    FOR EACH ROW EXECUTE FUNCTION refuse_delete_or_rekey();
CREATE TRIGGER schools_kept BEFORE DELETE OR UPDATE OF id ON schools
    FOR EACH ROW EXECUTE FUNCTION refuse_delete_or_rekey();
-- TRUNCATE skips row triggers; refuse it as well.
CREATE TRIGGER people_not_truncated BEFORE TRUNCATE ON people
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_delete_or_rekey();
CREATE TRIGGER schools_not_truncated BEFORE TRUNCATE ON schools
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_delete_or_rekey();
