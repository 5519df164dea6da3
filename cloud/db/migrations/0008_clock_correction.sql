-- 0008: clock correction of unsynced events (protocol.md "Clock").
--
-- A board whose clock synced reports, in its status, the reference pair clock {t, up} for its
-- current boot. Every event of that (device, boot) with sync 0 then gets
--     occurred_at_corrected = t_ref - (up_ref - up) / 1000          (Unix seconds)
-- in its own column: occurred_at is part of the dedupe key and immutable (0002, trigger
-- events_identity_immutable), so it keeps the board's time. Events already stored are corrected
-- by the status consumer (cloud.ingest.clock.apply_status_clock); events arriving after the
-- reference pair is known are corrected on insert by the trigger below (fires for unsynced rows
-- only, so synced ingest pays nothing).

ALTER TABLE events ADD COLUMN occurred_at_corrected timestamptz;

CREATE TABLE device_clock_refs (
    device_id   text NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    boot        bigint NOT NULL CHECK (boot >= 0),
    t_ref       bigint NOT NULL,
    up_ref      bigint NOT NULL CHECK (up_ref >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, boot)
);

CREATE FUNCTION clock_corrected(t_ref bigint, up_ref bigint, up bigint) RETURNS timestamptz
LANGUAGE sql IMMUTABLE AS $$
    SELECT to_timestamp(t_ref - (up_ref - up) / 1000.0)
$$;

CREATE FUNCTION events_clock_correct() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    SELECT clock_corrected(r.t_ref, r.up_ref, NEW.uptime_ms) INTO NEW.occurred_at_corrected
    FROM device_clock_refs r WHERE r.device_id = NEW.device_id AND r.boot = NEW.boot;
    RETURN NEW;
END
$$;
CREATE TRIGGER events_clock_correct BEFORE INSERT ON events
    FOR EACH ROW WHEN (NOT NEW.clock_synced) EXECUTE FUNCTION events_clock_correct();
