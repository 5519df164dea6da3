-- 0004: device provisioning (one-time claim tokens, broker credentials) and whitelist
-- distribution (versioned per-school lists, a dirty flag per school, the boards' last status).

-- 1. provisioning: a technician creates a claim token for a registered device; the board trades
-- it once for its MQTT credentials (docs/provisioning.md). Only the token's SHA-256 is stored.
CREATE TABLE device_claim_tokens (
    token_hash  bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    device_id   text NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    created_by  bigint REFERENCES users (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    CHECK (expires_at > created_at)
);
CREATE INDEX device_claim_tokens_device_idx ON device_claim_tokens (device_id);

-- The broker account of a provisioned board. The password is never stored here (the broker keeps
-- its own salted hash; the board got it once).
CREATE TABLE device_credentials (
    device_id       text PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    mqtt_username   text NOT NULL,
    broker_acl      boolean NOT NULL,  -- false: provisioned while the broker was open (no dynsec)
    provisioned_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at      timestamptz
);

-- 2. whitelists: every published list of a school, the newest N kept (version never reused:
-- the newest row is never pruned).
CREATE TABLE whitelists (
    school_id   text NOT NULL REFERENCES schools (id) ON DELETE CASCADE,
    version     bigint NOT NULL CHECK (version BETWEEN 1 AND 4294967295),
    bytes       bytea NOT NULL CHECK (length(bytes) >= 32),
    crc         bigint NOT NULL CHECK (crc BETWEEN 0 AND 4294967295),
    count       integer NOT NULL CHECK (count >= 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (school_id, version)
);

-- A school whose whitelist inputs changed (cards, people) since the worker last compiled it.
-- Set by triggers in the same transaction as the change; the worker deletes the row and compiles
-- in one transaction. ON CONFLICT DO UPDATE (not DO NOTHING) takes the row lock, so a compile
-- that races an uncommitted change waits for it and then sees it.
CREATE TABLE whitelist_dirty (
    school_id  text PRIMARY KEY REFERENCES schools (id) ON DELETE CASCADE,
    since      timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION whitelist_mark_dirty(p_school text) RETURNS void LANGUAGE sql AS $$
    INSERT INTO whitelist_dirty (school_id) SELECT p_school WHERE p_school IS NOT NULL
    ON CONFLICT (school_id) DO UPDATE SET since = excluded.since;
$$;

CREATE FUNCTION cards_whitelist_dirty() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM whitelist_mark_dirty((SELECT school_id FROM people WHERE id = OLD.person_id));
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM whitelist_mark_dirty((SELECT school_id FROM people WHERE id = NEW.person_id));
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER cards_whitelist_dirty AFTER INSERT OR UPDATE OR DELETE ON cards
    FOR EACH ROW EXECUTE FUNCTION cards_whitelist_dirty();

CREATE FUNCTION people_whitelist_dirty() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND
       (NEW.school_id, NEW.kind, NEW.meal_category, NEW.access_profile, NEW.allergen_mask,
        NEW.active) IS NOT DISTINCT FROM
       (OLD.school_id, OLD.kind, OLD.meal_category, OLD.access_profile, OLD.allergen_mask,
        OLD.active) THEN
        RETURN NULL;  -- a name or class change does not touch the whitelist
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM whitelist_mark_dirty(OLD.school_id);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM whitelist_mark_dirty(NEW.school_id);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER people_whitelist_dirty AFTER INSERT OR UPDATE OR DELETE ON people
    FOR EACH ROW EXECUTE FUNCTION people_whitelist_dirty();

-- 3. the last status each board published (protocol.md "Status"), kept by the whitelist worker
CREATE TABLE device_status (
    device_id   text PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    status      jsonb NOT NULL,
    wl_version  bigint,
    online      boolean NOT NULL,
    last_seen   timestamptz,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
