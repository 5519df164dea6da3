-- 0001: schools, devices, people, cards, events, quarantine.
-- Applied once by cloud/db/migrate.py inside a transaction.

CREATE TABLE schools (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    site_key    bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE devices (
    id          text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9-]{0,31}$'),
    school_id   text NOT NULL REFERENCES schools (id),
    place       text NOT NULL DEFAULT '',
    mode        text NOT NULL CHECK (mode IN ('door', 'turnstile', 'canteen')),
    reader      text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX devices_school_idx ON devices (school_id);

CREATE TABLE people (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    school_id       text NOT NULL REFERENCES schools (id),
    kind            text NOT NULL CHECK (kind IN ('student', 'staff')),
    full_name       text NOT NULL,
    -- whitelist attributes (protocol.md, whitelist format 1)
    meal_category   smallint NOT NULL DEFAULT 0 CHECK (meal_category BETWEEN 0 AND 3),
    access_profile  smallint NOT NULL DEFAULT 0 CHECK (access_profile BETWEEN 0 AND 255),
    allergen_mask   integer NOT NULL DEFAULT 0 CHECK (allergen_mask BETWEEN 0 AND 65535),
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX people_school_idx ON people (school_id);

CREATE TABLE cards (
    card_key    text PRIMARY KEY CHECK (card_key ~ '^[0-9a-f]{16}$'),
    person_id   bigint NOT NULL REFERENCES people (id),
    issued_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX cards_person_idx ON cards (person_id);

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
    -- board_time for now; corrected from uptime_ms for unsynced clocks by a later worker
    occurred_at   timestamptz NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, boot, seq)
);
CREATE INDEX events_occurred_idx ON events (occurred_at DESC, seq DESC);
CREATE INDEX events_school_occurred_idx ON events (school_id, occurred_at DESC);
CREATE INDEX events_person_occurred_idx ON events (person_id, occurred_at DESC)
    WHERE person_id IS NOT NULL;
CREATE INDEX events_device_occurred_idx ON events (device_id, occurred_at DESC);

CREATE TABLE quarantine (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at  timestamptz NOT NULL DEFAULT now(),
    topic        text NOT NULL,
    payload      bytea NOT NULL,
    reason       text NOT NULL,
    detail       text NOT NULL DEFAULT '',
    device_id    text,
    boot         bigint,
    first_seq    bigint,
    last_seq     bigint
);
CREATE INDEX quarantine_received_idx ON quarantine (received_at);
