-- 0019: Social Wallet records no meal is lost to configuration order (issue #13 item 10,
-- docs/social-wallet.md, decision D24-F).
--
-- * One price per meal, everywhere. A meal's price, family share and subsidy are the receipt's
--   own columns (meal_receipts.price/family_pays/subsidy), computed once by meal_receipt_price()
--   (0009: the price history as at occurred_at, the dish's price when known). The Social Wallet
--   record (0006 priced from the categories' *current* prices) and the monthly rollup (0007
--   priced again through the history, without the dish) now both read those columns, so the
--   record and the report cannot disagree.
-- * A meal stored before its school had prices is re-priced from the history (as at the meal)
--   by meal_receipt_reprice(), which an operator's resend calls; its rollup month is rebuilt and
--   a paid meal is charged then (the same ledger source, so never twice).
-- * The record's body is built by one function, sw_meal_payload(), at enqueue and at a resend.
-- * Setting a school's BIN fills it into the records of that school nobody has tried to send
--   yet (the receiver never saw them, so their body may still change).
-- * sw_deliveries counts resends; outbox_workers lets the API tell whether anything delivers
--   the Social Wallet rows at all (a worker's heartbeat with the kinds it handles).

-- 1. the record's body from a receipt: the receipt's prices, the school's BIN and the pupil's IIN
--    as they are now
CREATE FUNCTION sw_meal_payload(r meal_receipts) RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    cat text := CASE r.meal_category WHEN 1 THEN 'free' WHEN 2 THEN 'reduced' ELSE 'paid' END;
    dish jsonb;
    iin text;
    bin text;
BEGIN
    IF r.dish_id IS NOT NULL THEN
        SELECT jsonb_build_object('id', d.id, 'name', d.name_ru, 'name_kk', d.name_kk)
        INTO dish FROM dishes d WHERE d.id = r.dish_id;
    END IF;
    SELECT p.external_id INTO iin FROM people p WHERE p.id = r.person_id;
    IF iin !~ '^[0-9]{12}$' THEN
        iin := NULL;
    END IF;
    SELECT s.bin INTO bin FROM schools s WHERE s.id = r.school_id;
    RETURN jsonb_build_object(
        'v', 1,
        'school', jsonb_build_object('id', r.school_id, 'bin', bin),
        'pupil', jsonb_build_object('person_id', r.person_id, 'iin', iin),
        'occurred_at', to_char(r.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
        'day', to_char(r.day, 'YYYY-MM-DD'),
        'meal_category', cat,
        'dish', dish,
        'currency', 'KZT',
        'price', to_char(r.price, 'FM999999999990.00'),
        'pupil_paid', to_char(r.family_pays, 'FM999999999990.00'),
        'subsidy', to_char(r.subsidy, 'FM999999999990.00'),
        'source', jsonb_build_object('device_id', r.device_id, 'boot', r.boot, 'seq', r.seq));
END
$$;

-- the trigger of 0006 (AFTER INSERT: NEW already carries the prices meal_receipts_price set)
CREATE OR REPLACE FUNCTION sw_enqueue_meal(r meal_receipts) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    k text := 'meal:' || r.device_id || ':' || r.boot || ':' || r.seq;
    cat text := CASE r.meal_category WHEN 1 THEN 'free' WHEN 2 THEN 'reduced' ELSE 'paid' END;
    new_id bigint;
BEGIN
    INSERT INTO outbox (kind, idempotency_key, payload)
    VALUES ('social_wallet', k, sw_meal_payload(r))
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

-- 2. the monthly rollup reads the receipts' prices (-1: not priced), like the records
CREATE OR REPLACE FUNCTION meal_rollup_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(hashtext('qadam.meal_rollup:' || school_id))
    FROM (SELECT DISTINCT school_id FROM new_receipts ORDER BY 1) s;
    INSERT INTO meal_rollup AS r (school_id, month, person_id, code, price, paid, quantity)
    SELECT n.school_id, date_trunc('month', n.day)::date, n.person_id, n.meal_category,
           coalesce(n.price, -1), coalesce(n.family_pays, -1), count(*)
    FROM new_receipts n
    WHERE n.person_id IS NOT NULL AND n.meal_category IS NOT NULL
    GROUP BY 1, 2, 3, 4, 5, 6
    ORDER BY 1, 2, 3, 4, 5, 6  -- concurrent ingest workers lock rows in the same order
    ON CONFLICT (school_id, month, person_id, code, price, paid)
        DO UPDATE SET quantity = r.quantity + EXCLUDED.quantity;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION meal_rollup_rows(p_schools text[], p_from date, p_to date)
RETURNS TABLE (school_id text, month date, person_id bigint, code smallint, price numeric,
               paid numeric, quantity bigint)
LANGUAGE sql STABLE AS $$
    SELECT m.school_id, date_trunc('month', m.day)::date, m.person_id, m.meal_category,
           coalesce(m.price, -1), coalesce(m.family_pays, -1), count(*)
    FROM meal_receipts m
    WHERE m.school_id = ANY(p_schools) AND m.day >= p_from AND m.day < p_to
      AND m.person_id IS NOT NULL AND m.meal_category IS NOT NULL
    GROUP BY 1, 2, 3, 4, 5, 6
$$;

-- 3. price a meal that was stored unpriced, from the history as at the meal. Returns true when
--    the receipt got a price it did not have; a priced receipt is never changed (its price was
--    charged, reported and possibly accepted). The caller rebuilds the rollup month.
CREATE FUNCTION meal_receipt_reprice(p_device text, p_boot bigint, p_seq bigint,
                                     p_actor bigint DEFAULT NULL)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    r meal_receipts;
    p meal_receipts;
BEGIN
    SELECT * INTO r FROM meal_receipts m
    WHERE m.device_id = p_device AND m.boot = p_boot AND m.seq = p_seq FOR UPDATE;
    IF NOT FOUND OR (r.price IS NOT NULL AND r.family_pays IS NOT NULL) THEN
        RETURN false;
    END IF;
    p := meal_receipt_price(r);
    IF p.price IS NOT DISTINCT FROM r.price AND p.family_pays IS NOT DISTINCT FROM r.family_pays
    THEN
        RETURN false;  -- still no price
    END IF;
    UPDATE meal_receipts m SET price = p.price, family_pays = p.family_pays, subsidy = p.subsidy
    WHERE m.device_id = p_device AND m.boot = p_boot AND m.seq = p_seq;
    IF r.person_id IS NOT NULL AND p.family_pays > 0 THEN
        -- the charge the ingest could not make (0009; the same source, so at most once)
        PERFORM ledger_post(r.person_id, 'charge', -p.family_pays, 'meal', p_actor,
                            'meal:' || r.device_id || ':' || r.boot || ':' || r.seq,
                            r.device_id, r.boot, r.seq);
    END IF;
    RETURN true;
END
$$;

-- 4. resends
ALTER TABLE sw_deliveries
    ADD COLUMN resends    integer NOT NULL DEFAULT 0 CHECK (resends >= 0),
    ADD COLUMN resent_at  timestamptz,
    ADD COLUMN resent_by  bigint REFERENCES users (id);
-- rejected records wait for an operator: counted (status, metrics) and picked (bulk resend)
CREATE INDEX sw_deliveries_rejected_idx ON sw_deliveries (school_id, occurred_at)
    WHERE state = 'rejected';

-- 5. a BIN set (or corrected) reaches the records nobody has tried to send yet
CREATE FUNCTION schools_bin_to_records() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE outbox o
    SET payload = jsonb_set(o.payload, '{school,bin}', coalesce(to_jsonb(NEW.bin), 'null'))
    FROM sw_deliveries d
    WHERE d.school_id = NEW.id AND d.state = 'pending' AND o.id = d.outbox_id
      AND o.attempts = 0 AND o.delivered_at IS NULL AND o.dead_at IS NULL;
    RETURN NULL;
END
$$;
CREATE TRIGGER schools_bin_to_records AFTER UPDATE OF bin ON schools
    FOR EACH ROW WHEN (NEW.bin IS DISTINCT FROM OLD.bin)
    EXECUTE FUNCTION schools_bin_to_records();

-- 6. who delivers what: each outbox worker's heartbeat
CREATE TABLE outbox_workers (
    worker_id   text PRIMARY KEY CHECK (length(worker_id) BETWEEN 1 AND 200),
    kinds       text[] NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    seen_at     timestamptz NOT NULL DEFAULT now()
);

-- 7. what existed before: records never tried are rebuilt with the receipts' prices, and the
--    rollup is rebuilt from the receipts' prices
UPDATE outbox o SET payload = sw_meal_payload(m)
FROM sw_deliveries d JOIN meal_receipts m
     ON m.device_id = d.device_id AND m.boot = d.boot AND m.seq = d.seq
WHERE d.outbox_id = o.id AND d.state = 'pending' AND o.attempts = 0
  AND o.delivered_at IS NULL AND o.dead_at IS NULL;
DELETE FROM meal_rollup;
INSERT INTO meal_rollup (school_id, month, person_id, code, price, paid, quantity)
SELECT * FROM meal_rollup_rows(ARRAY(SELECT id FROM schools), '-infinity', 'infinity');
