-- 0010: balances pushed to the canteen boards (docs/protocol.md "Canteen balances", D15).
--
-- * balance_dirty marks a school whose boards' balances are out of date: any balance change
--   (ledger_post: top-ups, refunds, corrections, meal charges in the ingest transaction) and any
--   change of the school's cards or people (whitelist_mark_dirty, 0004: the balances are keyed
--   by card). `since` keeps the first mark, so the worker (cloud/workers/balance_push.py) pushes
--   a burst of changes once, at most every debounce interval.
-- * The mark is ON CONFLICT DO UPDATE (a no-op update), not DO NOTHING: it takes the row lock,
--   so the worker's claim (DELETE) waits for a transaction that marked the school and is not
--   committed yet, and the balances it reads after the claim include that change.
-- * balance_push_state holds the school's push version, bumped at every claim; a board reports
--   the version it runs in its status ("bal"), so a board that missed a push gets the current one.

CREATE TABLE balance_dirty (
    school_id  text PRIMARY KEY REFERENCES schools (id) ON DELETE CASCADE,
    since      timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE balance_push_state (
    school_id   text PRIMARY KEY REFERENCES schools (id) ON DELETE CASCADE,
    version     bigint NOT NULL DEFAULT 0 CHECK (version BETWEEN 0 AND 4294967295),
    cards       integer,         -- records in the last push
    pushed_at   timestamptz      -- when the last push was built
);

CREATE FUNCTION balance_mark_dirty(p_school text) RETURNS void LANGUAGE sql AS $$
    INSERT INTO balance_dirty (school_id) SELECT p_school WHERE p_school IS NOT NULL
    ON CONFLICT (school_id) DO UPDATE SET since = balance_dirty.since;
$$;

-- every balance change (one UPDATE per ledger_post call)
CREATE FUNCTION balances_push_dirty() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM balance_mark_dirty(s.school_id)
    FROM (SELECT DISTINCT school_id FROM changed_balances ORDER BY school_id) s;
    RETURN NULL;
END
$$;
CREATE TRIGGER balances_push_dirty AFTER UPDATE ON balances
    REFERENCING NEW TABLE AS changed_balances
    FOR EACH STATEMENT EXECUTE FUNCTION balances_push_dirty();

-- a change of the whitelist is a change of the card set the balances are keyed by
CREATE OR REPLACE FUNCTION whitelist_mark_dirty(p_school text) RETURNS void LANGUAGE sql AS $$
    INSERT INTO whitelist_dirty (school_id) SELECT p_school WHERE p_school IS NOT NULL
    ON CONFLICT (school_id) DO UPDATE SET since = excluded.since;
    SELECT balance_mark_dirty(p_school);
$$;
