-- 0002: events as a time series, derived rows (attendance, meal receipts) and the outbox.
--
-- events becomes partitioned by occurred_at: a TimescaleDB hypertable when the extension can be
-- loaded, else native monthly RANGE partitions plus a DEFAULT partition for late or odd uploads.
-- Both flavours are driven through the same two functions:
--     ensure_event_partitions(from timestamptz, to timestamptz) -> int   (partitions created)
--     drop_event_partitions_older_than(cutoff timestamptz) -> int         (partitions dropped)
--
-- Dedupe: a partitioned table's primary key must contain the partition key, so the key becomes
-- (device_id, boot, seq, occurred_at). An event's identity is (device_id, boot, seq); a
-- retransmission is byte-identical (protocol.md), so its board time and therefore occurred_at
-- (= to_timestamp(t)) are identical too, and the wider key still rejects it. This only holds as
-- long as occurred_at never changes after the insert: the trigger events_identity_immutable
-- enforces that (a clock correction must go to its own column, never into occurred_at).

-- 1. school time zone (attendance days are local days)
CREATE FUNCTION is_time_zone(tz text) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    PERFORM timestamptz '2000-01-01 00:00:00+00' AT TIME ZONE tz;
    RETURN true;
EXCEPTION WHEN invalid_parameter_value THEN
    RETURN false;
END
$$;
ALTER TABLE schools ADD COLUMN timezone text NOT NULL DEFAULT 'Asia/Almaty'
    CHECK (is_time_zone(timezone));

-- 2. the new events table
ALTER TABLE events RENAME TO events_0001;
ALTER TABLE events_0001 RENAME CONSTRAINT events_pkey TO events_0001_pkey;
ALTER INDEX events_occurred_idx RENAME TO events_0001_occurred_idx;
ALTER INDEX events_school_occurred_idx RENAME TO events_0001_school_occurred_idx;
ALTER INDEX events_person_occurred_idx RENAME TO events_0001_person_occurred_idx;
ALTER INDEX events_device_occurred_idx RENAME TO events_0001_device_occurred_idx;

CREATE TABLE event_storage (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    flavour    text NOT NULL CHECK (flavour IN ('timescaledb', 'native'))
);

DO $$
DECLARE
    ts boolean := EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')
                  AND current_setting('shared_preload_libraries') LIKE '%timescaledb%';
    ddl text := $ddl$
        CREATE TABLE events (
            device_id     text NOT NULL,
            boot          bigint NOT NULL CHECK (boot >= 0),
            seq           bigint NOT NULL CHECK (seq >= 1),
            school_id     text NOT NULL REFERENCES schools (id),
            person_id     bigint REFERENCES people (id),
            card_key      text NOT NULL,
            kind          text NOT NULL,
            reader        text NOT NULL,
            result        text NOT NULL,
            reason        text NOT NULL,
            board_time    timestamptz NOT NULL,
            clock_synced  boolean NOT NULL,
            uptime_ms     bigint NOT NULL,
            occurred_at   timestamptz NOT NULL,
            received_at   timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (device_id, boot, seq, occurred_at)
        ) $ddl$;
BEGIN
    IF ts THEN
        CREATE EXTENSION IF NOT EXISTS timescaledb;
        EXECUTE ddl;
        PERFORM create_hypertable('events', 'occurred_at',
                                  chunk_time_interval => interval '1 month');
        INSERT INTO event_storage (flavour) VALUES ('timescaledb');
    ELSE
        EXECUTE ddl || ' PARTITION BY RANGE (occurred_at)';
        CREATE TABLE events_default PARTITION OF events DEFAULT;
        INSERT INTO event_storage (flavour) VALUES ('native');
    END IF;
END
$$;

CREATE INDEX events_occurred_idx ON events (occurred_at DESC, seq DESC);
CREATE INDEX events_school_occurred_idx ON events (school_id, occurred_at DESC);
CREATE INDEX events_person_occurred_idx ON events (person_id, occurred_at DESC)
    WHERE person_id IS NOT NULL;
CREATE INDEX events_device_occurred_idx ON events (device_id, occurred_at DESC);

CREATE FUNCTION events_identity_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.device_id, NEW.boot, NEW.seq, NEW.occurred_at)
       IS DISTINCT FROM (OLD.device_id, OLD.boot, OLD.seq, OLD.occurred_at) THEN
        RAISE EXCEPTION 'events: device_id, boot, seq and occurred_at are immutable (dedupe key)'
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER events_identity_immutable BEFORE UPDATE ON events
    FOR EACH ROW EXECUTE FUNCTION events_identity_immutable();

-- 3. partition management, one surface for both flavours

-- Monthly partitions events_pYYYYMM covering every month that overlaps [p_from, p_to]. Rows that
-- already sit in the DEFAULT partition for a new month are moved into it. Returns how many
-- partitions were created (always 0 for a hypertable: TimescaleDB creates chunks itself).
CREATE FUNCTION ensure_event_partitions(p_from timestamptz, p_to timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    m timestamptz;
    hi timestamptz;
    part text;
    created integer := 0;
BEGIN
    IF p_from IS NULL OR p_to IS NULL OR p_to < p_from THEN
        RAISE EXCEPTION 'ensure_event_partitions: bad range % .. %', p_from, p_to
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_to - p_from > interval '20 years' THEN
        RAISE EXCEPTION 'ensure_event_partitions: range longer than 20 years'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF (SELECT flavour FROM event_storage) = 'timescaledb' THEN
        RETURN 0;
    END IF;
    -- concurrent callers (several ingest workers starting) take turns
    PERFORM pg_advisory_xact_lock(hashtext('qadam.ensure_event_partitions'));
    m := date_trunc('month', p_from AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    WHILE m <= p_to LOOP
        hi := (date_trunc('month', m AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC';
        part := 'events_p' || to_char(m AT TIME ZONE 'UTC', 'YYYYMM');
        IF to_regclass(quote_ident(part)) IS NULL THEN
            EXECUTE format('CREATE TABLE %I (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                           part);
            EXECUTE format('WITH moved AS (DELETE FROM events_default WHERE occurred_at >= %L'
                           ' AND occurred_at < %L RETURNING *) INSERT INTO %I SELECT * FROM moved',
                           m, hi, part);
            EXECUTE format('ALTER TABLE events ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                           part, m, hi);
            created := created + 1;
        END IF;
        m := hi;
    END LOOP;
    RETURN created;
END
$$;

-- Retention: drop every monthly partition (or chunk) whose whole range is older than p_cutoff.
-- The DEFAULT partition is never dropped. Returns how many partitions were dropped.
CREATE FUNCTION drop_event_partitions_older_than(p_cutoff timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    r record;
    dropped integer := 0;
BEGIN
    IF p_cutoff IS NULL THEN
        RAISE EXCEPTION 'drop_event_partitions_older_than: cutoff is NULL'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF (SELECT flavour FROM event_storage) = 'timescaledb' THEN
        EXECUTE 'SELECT count(*) FROM drop_chunks(''events'', older_than => $1)'
            INTO dropped USING p_cutoff;
        RETURN dropped;
    END IF;
    FOR r IN
        SELECT c.relname
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'events'::regclass AND c.relname ~ '^events_p[0-9]{6}$'
        ORDER BY c.relname
    LOOP
        IF (to_date(substr(r.relname, 9), 'YYYYMM') + interval '1 month') AT TIME ZONE 'UTC'
           <= p_cutoff THEN
            EXECUTE format('DROP TABLE %I', r.relname);
            dropped := dropped + 1;
        END IF;
    END LOOP;
    RETURN dropped;
END
$$;

-- Partitions for the existing rows and the months around now, then move the rows over.
SELECT ensure_event_partitions(
    least(now() - interval '1 month', (SELECT min(occurred_at) FROM events_0001)),
    now() + interval '3 months');
INSERT INTO events SELECT * FROM events_0001;
DROP TABLE events_0001;

-- 4. derived rows, written in the ingest transaction from the newly inserted events only

-- One row per person and local school day: first granted entry, last granted exit, and how
-- many granted passages (in or out) there were.
CREATE TABLE attendance (
    person_id   bigint NOT NULL REFERENCES people (id),
    day         date NOT NULL,
    school_id   text NOT NULL REFERENCES schools (id),
    first_in    timestamptz,
    last_out    timestamptz,
    passages    integer NOT NULL CHECK (passages >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (person_id, day)
);
CREATE INDEX attendance_school_day_idx ON attendance (school_id, day);

-- One row per granted canteen tap (the event's identity is the receipt's identity).
CREATE TABLE meal_receipts (
    device_id      text NOT NULL,
    boot           bigint NOT NULL,
    seq            bigint NOT NULL,
    school_id      text NOT NULL REFERENCES schools (id),
    person_id      bigint REFERENCES people (id),
    meal_category  smallint,
    occurred_at    timestamptz NOT NULL,
    day            date NOT NULL,
    PRIMARY KEY (device_id, boot, seq)
);
CREATE INDEX meal_receipts_school_day_idx ON meal_receipts (school_id, day);
CREATE INDEX meal_receipts_person_day_idx ON meal_receipts (person_id, day)
    WHERE person_id IS NOT NULL;

-- Side effects leave through the outbox (invariant 6): delivered at least once, deduplicated by
-- the receiver with idempotency_key.
CREATE TABLE outbox (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind             text NOT NULL,
    idempotency_key  text NOT NULL UNIQUE,
    payload          jsonb NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0)
);
CREATE INDEX outbox_pending_idx ON outbox (id) WHERE delivered_at IS NULL;
