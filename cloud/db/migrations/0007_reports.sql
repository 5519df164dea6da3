-- 0007: monthly reports (docs/reports.md): meal prices over time, a monthly per-person meal
-- rollup kept current by the ingest transaction, the school day start for lateness, and one
-- report row per (school, month, kind) with its frozen content.

-- 1. when the school day starts (local time of schools.timezone): arrivals after it are late
ALTER TABLE schools ADD COLUMN day_start time NOT NULL DEFAULT '08:30';

-- 2. what a meal costs, over time. As in 0006 (Social Wallet): a meal's full price is the
-- school's 'paid' category price; the family pays its own category's price (free: 0, paid: the
-- full price); the subsidy is the difference. Both prices are read from a price history, so a
-- meal is priced as at the moment it was served, not at report time.
CREATE TABLE meal_category_prices (
    category_id  bigint NOT NULL REFERENCES meal_categories (id),
    valid_from   timestamptz NOT NULL,
    price        numeric(12, 2) NOT NULL CHECK (price >= 0),
    PRIMARY KEY (category_id, valid_from)
);

-- The first row of a category is valid from -infinity (meals recorded before the category was
-- entered get its first price); every later price change starts at now().
INSERT INTO meal_category_prices (category_id, valid_from, price)
SELECT id, '-infinity', price FROM meal_categories;

CREATE FUNCTION meal_category_price_history() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.price IS NOT DISTINCT FROM OLD.price THEN
        RETURN NULL;
    END IF;
    INSERT INTO meal_category_prices (category_id, valid_from, price)
    VALUES (NEW.id, CASE TG_OP WHEN 'INSERT' THEN '-infinity'::timestamptz ELSE now() END,
            NEW.price)
    ON CONFLICT (category_id, valid_from) DO UPDATE SET price = EXCLUDED.price;
    RETURN NULL;
END
$$;
CREATE TRIGGER meal_category_price_history
    AFTER INSERT OR UPDATE OF price ON meal_categories
    FOR EACH ROW EXECUTE FUNCTION meal_category_price_history();

-- price: the full price of a meal of category p_code at p_at (NULL when the school has no paid
-- category); paid: the family's share (NULL when the school has no such category).
-- SETOF, so the planner can inline it into the calling query.
CREATE FUNCTION meal_price_at(p_school text, p_code smallint, p_at timestamptz)
RETURNS TABLE (price numeric, paid numeric) LANGUAGE sql STABLE ROWS 1 AS $$
    SELECT f.price,
           CASE p_code WHEN 1 THEN 0 WHEN 3 THEN f.price ELSE o.price END
    FROM (SELECT 1) one
    LEFT JOIN LATERAL (
        SELECT h.price FROM meal_categories c
        JOIN meal_category_prices h ON h.category_id = c.id AND h.valid_from <= p_at
        WHERE c.school_id = p_school AND c.code = 3
        ORDER BY h.valid_from DESC LIMIT 1) f ON true
    LEFT JOIN LATERAL (
        SELECT h.price FROM meal_categories c
        JOIN meal_category_prices h ON h.category_id = c.id AND h.valid_from <= p_at
        WHERE c.school_id = p_school AND c.code = p_code
        ORDER BY h.valid_from DESC LIMIT 1) o ON true
$$;

-- 3. monthly per-person meal rollup: one row per (school, month, person, category code, full
-- price, family share) with the number of meals. Kept current by a statement-level trigger on
-- meal_receipts (one aggregated upsert per ingest statement, inside the ingest transaction);
-- refresh_meal_rollup() rebuilds one school-month from meal_receipts (after deletions or a
-- retroactive price correction). A price of -1 marks "not configured" (no category row).
CREATE TABLE meal_rollup (
    school_id  text NOT NULL REFERENCES schools (id),
    month      date NOT NULL CHECK (extract(day FROM month) = 1),
    person_id  bigint NOT NULL REFERENCES people (id),
    code       smallint NOT NULL,
    price      numeric(12, 2) NOT NULL,
    paid       numeric(12, 2) NOT NULL,
    quantity   integer NOT NULL CHECK (quantity >= 0),
    PRIMARY KEY (school_id, month, person_id, code, price, paid)
);

-- Price periods [valid_from, valid_to) of a school's categories, for a range join: pricing many
-- receipts at once (a rebuild) this way is a hash join instead of one lookup per receipt.
CREATE FUNCTION meal_price_periods(p_schools text[])
RETURNS TABLE (school_id text, code smallint, valid_from timestamptz, valid_to timestamptz,
               price numeric)
LANGUAGE sql STABLE AS $$
    SELECT c.school_id, c.code, h.valid_from,
           lead(h.valid_from, 1, 'infinity') OVER (PARTITION BY h.category_id
                                                    ORDER BY h.valid_from),
           h.price
    FROM meal_categories c JOIN meal_category_prices h ON h.category_id = c.id
    WHERE c.school_id = ANY(p_schools)
$$;

-- The ingest takes a shared per-school lock, refresh_meal_rollup an exclusive one, so a rebuild
-- never races an ingest transaction that is adding to the same school's rows.
CREATE FUNCTION meal_rollup_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(hashtext('qadam.meal_rollup:' || school_id))
    FROM (SELECT DISTINCT school_id FROM new_receipts ORDER BY 1) s;
    WITH periods AS MATERIALIZED (
        SELECT * FROM meal_price_periods(ARRAY(SELECT DISTINCT school_id FROM new_receipts))
    )
    INSERT INTO meal_rollup AS r (school_id, month, person_id, code, price, paid, quantity)
    SELECT n.school_id, date_trunc('month', n.day)::date, n.person_id, n.meal_category,
           coalesce(f.price, -1),
           coalesce(CASE n.meal_category WHEN 1 THEN 0 WHEN 3 THEN f.price ELSE o.price END, -1),
           count(*)
    FROM new_receipts n
    LEFT JOIN periods f ON f.school_id = n.school_id AND f.code = 3
         AND n.occurred_at >= f.valid_from AND n.occurred_at < f.valid_to
    LEFT JOIN periods o ON o.school_id = n.school_id AND o.code = n.meal_category
         AND n.occurred_at >= o.valid_from AND n.occurred_at < o.valid_to
    WHERE n.person_id IS NOT NULL AND n.meal_category IS NOT NULL
    GROUP BY 1, 2, 3, 4, 5, 6
    ORDER BY 1, 2, 3, 4, 5, 6  -- concurrent ingest workers lock rows in the same order
    ON CONFLICT (school_id, month, person_id, code, price, paid)
        DO UPDATE SET quantity = r.quantity + EXCLUDED.quantity;
    RETURN NULL;
END
$$;
CREATE TRIGGER meal_rollup_add AFTER INSERT ON meal_receipts
    REFERENCING NEW TABLE AS new_receipts
    FOR EACH STATEMENT EXECUTE FUNCTION meal_rollup_add();

-- Receipts of the given schools in [p_from, p_to) priced like meal_price_at, grouped as rollup rows.
CREATE FUNCTION meal_rollup_rows(p_schools text[], p_from date, p_to date)
RETURNS TABLE (school_id text, month date, person_id bigint, code smallint, price numeric,
               paid numeric, quantity bigint)
LANGUAGE sql STABLE AS $$
    WITH periods AS MATERIALIZED (SELECT * FROM meal_price_periods(p_schools))
    SELECT m.school_id, date_trunc('month', m.day)::date, m.person_id, m.meal_category,
           coalesce(f.price, -1),
           coalesce(CASE m.meal_category WHEN 1 THEN 0 WHEN 3 THEN f.price ELSE o.price END, -1),
           count(*)
    FROM meal_receipts m
    LEFT JOIN periods f ON f.school_id = m.school_id AND f.code = 3
         AND m.occurred_at >= f.valid_from AND m.occurred_at < f.valid_to
    LEFT JOIN periods o ON o.school_id = m.school_id AND o.code = m.meal_category
         AND m.occurred_at >= o.valid_from AND m.occurred_at < o.valid_to
    WHERE m.school_id = ANY(p_schools) AND m.day >= p_from AND m.day < p_to
      AND m.person_id IS NOT NULL AND m.meal_category IS NOT NULL
    GROUP BY 1, 2, 3, 4, 5, 6
$$;

CREATE FUNCTION refresh_meal_rollup(p_school text, p_month date) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('qadam.meal_rollup:' || p_school));
    DELETE FROM meal_rollup WHERE school_id = p_school AND month = p_month;
    INSERT INTO meal_rollup (school_id, month, person_id, code, price, paid, quantity)
    SELECT * FROM meal_rollup_rows(ARRAY[p_school], p_month,
                                   (p_month + interval '1 month')::date);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- Rows that existed before this migration.
INSERT INTO meal_rollup (school_id, month, person_id, code, price, paid, quantity)
SELECT * FROM meal_rollup_rows(ARRAY(SELECT id FROM schools), '-infinity', 'infinity');

-- 4. the reports: one row per (school, month, kind); content frozen at generation (a draft is
-- regenerated on demand, an approved report never changes).
CREATE TABLE reports (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    school_id     text NOT NULL REFERENCES schools (id),
    month         date NOT NULL CHECK (extract(day FROM month) = 1),
    kind          text NOT NULL CHECK (kind IN ('meals', 'attendance')),
    status        text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'approved')),
    summary       jsonb NOT NULL DEFAULT '{}',
    data          jsonb NOT NULL,
    generated_at  timestamptz NOT NULL DEFAULT now(),
    generated_by  bigint REFERENCES users (id),  -- NULL: the scheduler
    approved_at   timestamptz,
    approved_by   bigint REFERENCES users (id),
    UNIQUE (school_id, month, kind),
    CHECK ((status = 'approved') = (approved_at IS NOT NULL))
);
CREATE INDEX reports_month_idx ON reports (month, status);
