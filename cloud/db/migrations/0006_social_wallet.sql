-- 0006: outbox delivery (retry schedule, dead letters) and the Social Wallet adapter
-- (docs/social-wallet.md).
--
-- * outbox gets what a delivery worker needs: next_attempt_at (retry schedule with backoff; also
--   the lease of a claimed row), last_attempt_at, last_error, dead_at (gave up: dead letter).
-- * Every meal receipt enqueues one 'social_wallet' outbox row and one sw_deliveries row, from a
--   trigger on meal_receipts, so in the same transaction as the event that produced the receipt
--   (invariant 6). The idempotency key is the receipt's identity: meal:{device}:{boot}:{seq}.
-- * sw_deliveries is the reconciliation ledger: one row per meal record, with its state at the
--   state system (pending -> sent -> accepted | rejected, or dead when we gave up).

-- 1. schools: the business identification number the state system knows a school by
ALTER TABLE schools ADD COLUMN bin text CHECK (bin ~ '^[0-9]{12}$');

-- 2. outbox delivery state
ALTER TABLE outbox
    ADD COLUMN next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN last_attempt_at  timestamptz,
    ADD COLUMN last_error       text CHECK (length(last_error) <= 2000),
    ADD COLUMN dead_at          timestamptz,
    ADD CONSTRAINT outbox_delivered_or_dead CHECK (delivered_at IS NULL OR dead_at IS NULL);
DROP INDEX outbox_pending_idx;
-- the claim query: due rows in schedule order
CREATE INDEX outbox_due_idx ON outbox (next_attempt_at, id)
    WHERE delivered_at IS NULL AND dead_at IS NULL;
CREATE INDEX outbox_dead_idx ON outbox (dead_at) WHERE dead_at IS NOT NULL;

-- 3. the Social Wallet ledger
CREATE TABLE sw_deliveries (
    idempotency_key  text PRIMARY KEY,
    outbox_id        bigint NOT NULL UNIQUE REFERENCES outbox (id),
    school_id        text NOT NULL REFERENCES schools (id),
    person_id        bigint REFERENCES people (id),
    device_id        text NOT NULL,
    boot             bigint NOT NULL,
    seq              bigint NOT NULL,
    occurred_at      timestamptz NOT NULL,
    day              date NOT NULL,
    meal_category    text NOT NULL CHECK (meal_category IN ('free', 'reduced', 'paid')),
    state            text NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'sent', 'accepted', 'rejected', 'dead')),
    reference        text CHECK (length(reference) <= 200),
    reasons          jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(reasons) = 'array'),
    last_error       text CHECK (length(last_error) <= 2000),
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    created_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz,       -- first attempt
    confirmed_at     timestamptz,       -- accepted or rejected
    reconciled_at    timestamptz,       -- last status query
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (device_id, boot, seq),
    CHECK (state <> 'accepted' OR reference IS NOT NULL),
    CHECK ((state IN ('accepted', 'rejected')) = (confirmed_at IS NOT NULL))
);
CREATE INDEX sw_deliveries_school_day_idx ON sw_deliveries (school_id, day);
CREATE INDEX sw_deliveries_state_idx ON sw_deliveries (state, updated_at)
    WHERE state IN ('pending', 'sent', 'dead');

-- 4. enqueue one meal record for a receipt (idempotent: a second call does nothing)
CREATE FUNCTION sw_enqueue_meal(r meal_receipts) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    k text := 'meal:' || r.device_id || ':' || r.boot || ':' || r.seq;
    cat text := CASE r.meal_category WHEN 1 THEN 'free' WHEN 2 THEN 'reduced' ELSE 'paid' END;
    dish_id bigint := (to_jsonb(r) ->> 'dish_id')::bigint;  -- when a later migration adds it
    dish jsonb;
    full_price numeric;
    pupil_pays numeric;
    iin text;
    bin text;
    new_id bigint;
BEGIN
    IF dish_id IS NOT NULL THEN
        SELECT jsonb_build_object('id', d.id, 'name', d.name_ru, 'name_kk', d.name_kk), d.price
        INTO dish, full_price FROM dishes d WHERE d.id = dish_id;
    END IF;
    -- the full price of a meal: the dish's, else the school's paid category price
    IF full_price IS NULL THEN
        SELECT mc.price INTO full_price FROM meal_categories mc
        WHERE mc.school_id = r.school_id AND mc.kind = 'paid';
    END IF;
    SELECT mc.price INTO pupil_pays FROM meal_categories mc
    WHERE mc.school_id = r.school_id AND mc.kind = cat;
    IF cat = 'free' THEN
        pupil_pays := 0;
    ELSIF cat = 'paid' THEN
        pupil_pays := full_price;
    END IF;
    SELECT p.external_id INTO iin FROM people p WHERE p.id = r.person_id;
    IF iin !~ '^[0-9]{12}$' THEN
        iin := NULL;
    END IF;
    SELECT s.bin INTO bin FROM schools s WHERE s.id = r.school_id;

    INSERT INTO outbox (kind, idempotency_key, payload)
    VALUES ('social_wallet', k, jsonb_build_object(
        'v', 1,
        'school', jsonb_build_object('id', r.school_id, 'bin', bin),
        'pupil', jsonb_build_object('person_id', r.person_id, 'iin', iin),
        'occurred_at', to_char(r.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
        'day', to_char(r.day, 'YYYY-MM-DD'),
        'meal_category', cat,
        'dish', dish,
        'currency', 'KZT',
        'price', to_char(full_price, 'FM999999999990.00'),
        'pupil_paid', to_char(pupil_pays, 'FM999999999990.00'),
        'subsidy', to_char(CASE WHEN full_price IS NOT NULL AND pupil_pays IS NOT NULL
                                THEN greatest(full_price - pupil_pays, 0) END,
                           'FM999999999990.00'),
        'source', jsonb_build_object('device_id', r.device_id, 'boot', r.boot, 'seq', r.seq)))
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id INTO new_id;
    IF new_id IS NULL THEN
        RETURN;
    END IF;
    INSERT INTO sw_deliveries (idempotency_key, outbox_id, school_id, person_id, device_id, boot,
                               seq, occurred_at, day, meal_category)
    VALUES (k, new_id, r.school_id, r.person_id, r.device_id, r.boot, r.seq, r.occurred_at, r.day,
            cat);
END
$$;

CREATE FUNCTION meal_receipts_to_social_wallet() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM sw_enqueue_meal(NEW);
    RETURN NULL;
END
$$;
CREATE TRIGGER meal_receipts_to_social_wallet AFTER INSERT ON meal_receipts
    FOR EACH ROW EXECUTE FUNCTION meal_receipts_to_social_wallet();

-- receipts stored before this migration are reported too (the outbox dedupes on the key)
SELECT sw_enqueue_meal(m) FROM meal_receipts m ORDER BY device_id, boot, seq;
