-- 0016: a deleted device id stays with its school (issue #13 item 2, D24-A).
--
-- Deleting a device leaves a tombstone. Registering that id again is allowed for the same school
-- (the tombstone goes away) and refused for any other school: a board whose device was deleted
-- must never have its taps stored as another school's. Enforced here, under every path that
-- inserts devices (API, registry, imports); the API checks first to answer a clear 409.

CREATE TABLE retired_devices (
    device_id      text PRIMARY KEY,
    school_id      text NOT NULL,  -- no FK: the id stays reserved even if the school goes
    mqtt_username  text,           -- the broker account it had (NULL: never provisioned)
    retired_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX retired_devices_school_idx ON retired_devices (school_id);

-- BEFORE DELETE: device_credentials (ON DELETE CASCADE) still holds the broker username.
CREATE FUNCTION devices_retire() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO retired_devices (device_id, school_id, mqtt_username)
    VALUES (OLD.id, OLD.school_id,
            (SELECT mqtt_username FROM device_credentials WHERE device_id = OLD.id))
    ON CONFLICT (device_id) DO UPDATE
        SET school_id = excluded.school_id, mqtt_username = excluded.mqtt_username,
            retired_at = excluded.retired_at;
    RETURN OLD;
END
$$;
CREATE TRIGGER devices_retire BEFORE DELETE ON devices
    FOR EACH ROW EXECUTE FUNCTION devices_retire();

CREATE FUNCTION devices_check_retired() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    owner text;
BEGIN
    SELECT school_id INTO owner FROM retired_devices WHERE device_id = NEW.id FOR UPDATE;
    IF owner IS NULL THEN
        RETURN NEW;
    END IF;
    IF owner IS DISTINCT FROM NEW.school_id THEN
        RAISE EXCEPTION 'device id % was retired by another school and cannot be reused', NEW.id
            USING ERRCODE = 'unique_violation', CONSTRAINT = 'retired_devices_pkey';
    END IF;
    DELETE FROM retired_devices WHERE device_id = NEW.id;  -- the same school takes it back
    RETURN NEW;
END
$$;
CREATE TRIGGER devices_check_retired BEFORE INSERT ON devices
    FOR EACH ROW EXECUTE FUNCTION devices_check_retired();

-- Devices deleted before this migration: their delete is in the audit log (store.delete keeps
-- the row as it was). Those provisioned then had the broker username = the device id.
INSERT INTO retired_devices (device_id, school_id, mqtt_username, retired_at)
SELECT DISTINCT ON (a.entity_id)
       a.entity_id,
       coalesce(a.school_id, a.before ->> 'school_id'),
       CASE WHEN EXISTS (SELECT 1 FROM audit_log c
                         WHERE c.entity = 'device_credentials' AND c.entity_id = a.entity_id)
            THEN a.entity_id END,
       a.at
FROM audit_log a
WHERE a.entity = 'devices' AND a.action = 'delete'
  AND coalesce(a.school_id, a.before ->> 'school_id') IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM devices d WHERE d.id = a.entity_id)
ORDER BY a.entity_id, a.at DESC;
