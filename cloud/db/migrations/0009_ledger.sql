-- 0009: meal records priced at the moment they were served, and a balance ledger per person
-- (docs/ledger.md, decision D13).
--
-- * meal_receipts gets dish_id (nullable: the boards do not report a dish yet), price (full
--   price), family_pays and subsidy, filled by a BEFORE INSERT trigger with the D10/D12 model:
--   full price = the dish's price if known, else the school's 'paid' category price as at
--   occurred_at (meal_category_prices, 0007); the family pays its category's price (free 0,
--   paid and no category = the full price); subsidy = the difference. 0006 (social wallet) and
--   0007 (rollup) keep pricing on their own; they agree with these columns.
-- * ledger_entries is append-only (a trigger refuses UPDATE, DELETE and TRUNCATE); balances holds
--   the current balance per person, changed only by ledger_post() in the same transaction as the
--   entry, under the balances row lock.
-- * A paid meal is charged in the ingest transaction (statement-level trigger on meal_receipts,
--   persons in a fixed order so concurrent ingest workers cannot deadlock). The board already
--   served the meal offline, so the charge is recorded even below the school's balance_floor
--   and flagged below_floor. Dropping below low_balance_threshold enqueues one 'low_balance'
--   outbox row per person and school-local day.

-- 1. per-school settings
ALTER TABLE schools
    ADD COLUMN balance_floor numeric(12, 2) NOT NULL DEFAULT 0
        CHECK (balance_floor BETWEEN -1000000 AND 0),
    ADD COLUMN low_balance_threshold numeric(12, 2) NOT NULL DEFAULT 1000
        CHECK (low_balance_threshold BETWEEN -1000000 AND 1000000);

-- 2. meal records: dish, price, family share and subsidy at that moment
ALTER TABLE meal_receipts
    ADD COLUMN dish_id bigint REFERENCES dishes (id),
    ADD COLUMN price numeric(12, 2),        -- full price; NULL: the school has no paid category
    ADD COLUMN family_pays numeric(12, 2),  -- NULL: the person's category has no price
    ADD COLUMN subsidy numeric(12, 2);

CREATE FUNCTION meal_receipt_price(r meal_receipts) RETURNS meal_receipts
LANGUAGE plpgsql STABLE AS $$
DECLARE
    code smallint := CASE WHEN r.meal_category IN (1, 2, 3) THEN r.meal_category ELSE 3 END;
    dish_price numeric;
BEGIN
    SELECT p.price, p.paid INTO r.price, r.family_pays
    FROM meal_price_at(r.school_id, code, r.occurred_at) p;
    IF r.dish_id IS NOT NULL THEN
        SELECT d.price INTO dish_price FROM dishes d WHERE d.id = r.dish_id;
        IF dish_price IS NOT NULL THEN
            r.price := dish_price;
            IF code = 3 THEN
                r.family_pays := dish_price;
            END IF;
        END IF;
    END IF;
    IF code = 1 THEN
        r.family_pays := 0;
    END IF;
    r.subsidy := CASE WHEN r.price IS NOT NULL AND r.family_pays IS NOT NULL
                      THEN greatest(r.price - r.family_pays, 0) END;
    RETURN r;
END
$$;

CREATE FUNCTION meal_receipts_price() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW := meal_receipt_price(NEW);
    RETURN NEW;
END
$$;
CREATE TRIGGER meal_receipts_price BEFORE INSERT ON meal_receipts
    FOR EACH ROW EXECUTE FUNCTION meal_receipts_price();

-- receipts stored before this migration get their prices too (they are not charged: the ledger
-- starts empty)
UPDATE meal_receipts m SET price = p.price, family_pays = p.family_pays, subsidy = p.subsidy
FROM meal_receipts o, LATERAL meal_receipt_price(o) p
WHERE o.device_id = m.device_id AND o.boot = m.boot AND o.seq = m.seq;

-- 3. the ledger
CREATE TABLE balances (
    person_id      bigint PRIMARY KEY REFERENCES people (id),
    school_id      text NOT NULL REFERENCES schools (id),
    balance        numeric(12, 2) NOT NULL DEFAULT 0,
    last_entry_id  bigint,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ledger_entries (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id      bigint NOT NULL REFERENCES people (id),
    school_id      text NOT NULL REFERENCES schools (id),
    kind           text NOT NULL CHECK (kind IN ('top_up', 'charge', 'refund', 'correction')),
    -- signed: what the entry adds to the balance (a charge is negative)
    amount         numeric(12, 2) NOT NULL CHECK (amount <> 0),
    balance_after  numeric(12, 2) NOT NULL,
    reason         text NOT NULL DEFAULT '' CHECK (length(reason) <= 500),
    actor          text NOT NULL CHECK (actor = 'ingest' OR actor ~ '^user:[0-9]+$'),
    actor_id       bigint REFERENCES users (id),
    -- what caused the entry, unique per person: 'meal:{device}:{boot}:{seq}' for a charge,
    -- 'api:{Idempotency-Key}' for an API call
    source         text NOT NULL CHECK (length(source) BETWEEN 1 AND 300),
    device_id      text,
    boot           bigint,
    seq            bigint,
    refund_of      bigint REFERENCES ledger_entries (id),
    below_floor    boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (person_id, source),
    CHECK (CASE kind WHEN 'charge' THEN amount < 0
                     WHEN 'top_up' THEN amount > 0
                     WHEN 'refund' THEN amount > 0 AND refund_of IS NOT NULL
                     ELSE true END),
    CHECK (kind = 'refund' OR refund_of IS NULL),
    CHECK (kind = 'charge' OR NOT below_floor),
    CHECK ((actor = 'ingest') = (actor_id IS NULL)),
    CHECK (kind <> 'correction' OR length(btrim(reason)) >= 3)
);
CREATE INDEX ledger_entries_person_idx ON ledger_entries (person_id, id DESC);
CREATE INDEX ledger_entries_school_idx ON ledger_entries (school_id, created_at);
CREATE INDEX ledger_entries_refund_idx ON ledger_entries (refund_of) WHERE refund_of IS NOT NULL;

CREATE FUNCTION ledger_entries_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger entries are append-only (% refused): post a correction instead',
        TG_OP USING ERRCODE = 'restrict_violation';
END
$$;
CREATE TRIGGER ledger_entries_no_change BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_entries_immutable();
CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_immutable();

-- The one way to change a balance: lock the person's balances row, append the entry, move the
-- balance, and enqueue a low-balance notification when the balance drops below the school's
-- threshold (or a charge goes below the floor). Idempotent on (person, source): a second call
-- returns the first entry and changes nothing (created = false).
CREATE FUNCTION ledger_post(
    p_person bigint, p_kind text, p_amount numeric, p_reason text, p_actor_id bigint,
    p_source text, p_device text DEFAULT NULL, p_boot bigint DEFAULT NULL,
    p_seq bigint DEFAULT NULL, p_refund_of bigint DEFAULT NULL,
    OUT entry_id bigint, OUT created boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_school text;
    v_floor numeric;
    v_threshold numeric;
    v_tz text;
    v_before numeric;
    v_after numeric;
    v_below boolean;
BEGIN
    SELECT p.school_id, s.balance_floor, s.low_balance_threshold, s.timezone
    INTO v_school, v_floor, v_threshold, v_tz
    FROM people p JOIN schools s ON s.id = p.school_id WHERE p.id = p_person;
    IF v_school IS NULL THEN
        RAISE EXCEPTION 'person % not found', p_person USING ERRCODE = 'foreign_key_violation';
    END IF;
    INSERT INTO balances (person_id, school_id) VALUES (p_person, v_school)
    ON CONFLICT (person_id) DO NOTHING;
    SELECT b.balance INTO v_before FROM balances b WHERE b.person_id = p_person FOR UPDATE;

    SELECT e.id INTO entry_id FROM ledger_entries e
    WHERE e.person_id = p_person AND e.source = p_source;
    IF entry_id IS NOT NULL THEN
        created := false;
        RETURN;
    END IF;

    v_after := v_before + p_amount;
    v_below := p_kind = 'charge' AND v_after < v_floor;
    INSERT INTO ledger_entries (person_id, school_id, kind, amount, balance_after, reason, actor,
                                actor_id, source, device_id, boot, seq, refund_of, below_floor)
    VALUES (p_person, v_school, p_kind, p_amount, v_after, coalesce(p_reason, ''),
            CASE WHEN p_actor_id IS NULL THEN 'ingest' ELSE 'user:' || p_actor_id END,
            p_actor_id, p_source, p_device, p_boot, p_seq, p_refund_of, v_below)
    RETURNING id INTO entry_id;
    UPDATE balances SET balance = v_after, last_entry_id = entry_id, updated_at = now()
    WHERE person_id = p_person;
    created := true;

    IF p_amount < 0 AND ((v_after < v_threshold AND v_before >= v_threshold) OR v_below) THEN
        INSERT INTO outbox (kind, idempotency_key, payload)
        VALUES ('low_balance',
                'low_balance:' || p_person || ':'
                    || to_char((now() AT TIME ZONE v_tz)::date, 'YYYY-MM-DD'),
                jsonb_build_object(
                    'v', 1, 'person_id', p_person, 'school_id', v_school, 'currency', 'KZT',
                    'balance', to_char(v_after, 'FM999999999990.00'),
                    'threshold', to_char(v_threshold, 'FM999999999990.00'),
                    'floor', to_char(v_floor, 'FM999999999990.00'),
                    'below_floor', v_after < v_floor, 'entry_id', entry_id,
                    'guardians', coalesce((SELECT jsonb_agg(g.guardian_id ORDER BY g.guardian_id)
                                           FROM guardian_students g
                                           WHERE g.person_id = p_person), '[]'::jsonb)))
        ON CONFLICT (idempotency_key) DO NOTHING;
    END IF;
END
$$;

-- 4. charges for paid meals, in the ingest transaction. One statement-level trigger, persons in
-- id order (then receipt order), so two ingest transactions lock balances rows in the same order.
CREATE FUNCTION meal_receipts_charge() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT n.person_id, n.family_pays, n.device_id, n.boot, n.seq
        FROM new_receipts n
        WHERE n.person_id IS NOT NULL AND n.family_pays > 0
        ORDER BY n.person_id, n.occurred_at, n.device_id, n.boot, n.seq
    LOOP
        PERFORM ledger_post(r.person_id, 'charge', -r.family_pays, 'meal', NULL,
                            'meal:' || r.device_id || ':' || r.boot || ':' || r.seq,
                            r.device_id, r.boot, r.seq);
    END LOOP;
    RETURN NULL;
END
$$;
CREATE TRIGGER meal_receipts_charge AFTER INSERT ON meal_receipts
    REFERENCING NEW TABLE AS new_receipts
    FOR EACH STATEMENT EXECUTE FUNCTION meal_receipts_charge();
