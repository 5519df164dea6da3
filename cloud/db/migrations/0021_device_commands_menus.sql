-- 0021: remote commands to boards and the dated canteen menu (issue #14 item 5, docs/decisions.md
-- D27-A, protocol.md "Commands" and "Canteen").
--
-- 1. device_commands: every command the cloud sends a board, who asked for it, its delivery state
--    and the board's reply. The row id is the command's id on the wire ({"v":1,"id":ID,...}); the
--    board answers on {prefix}/v1/dev/{device}/cmd/res and the reply is matched by (device, id).
--    queued   -> waiting for the board to be online (cloud/workers/command_push.py)
--    sent     -> published (QoS 1, never retained); `attempts` counts the publishes
--    ok       -> the board answered ok (reply kept)
--    failed   -> the board answered an error (reply and error kept)
--    expired  -> no answer before expires_at (the board was offline too long)
--    superseded -> a newer menu for the same board replaced it before it was answered
CREATE TABLE device_commands (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id   text NOT NULL REFERENCES devices (id) ON DELETE CASCADE,  -- audit_log keeps it
    school_id   text NOT NULL REFERENCES schools (id),
    cmd         text NOT NULL CHECK (cmd IN ('open', 'reboot', 'resync', 'config', 'diag')),
    -- the command's own keys besides v/id/cmd (config: {"set": {...}}), as sent
    args        jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(args) = 'object'),
    -- 'user': asked through the API; 'menu': the canteen menu push (one live per board)
    purpose     text NOT NULL DEFAULT 'user' CHECK (purpose IN ('user', 'menu')),
    actor       text NOT NULL CHECK (actor = 'system' OR actor ~ '^user:[0-9]+$'),
    actor_id    bigint REFERENCES users (id),
    state       text NOT NULL DEFAULT 'queued'
                CHECK (state IN ('queued', 'sent', 'ok', 'failed', 'expired', 'superseded')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    sent_at     timestamptz,
    attempts    integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    done_at     timestamptz,
    reply       jsonb,
    error       text CHECK (length(error) <= 200),
    CHECK (expires_at > created_at),
    CHECK ((actor = 'system') = (actor_id IS NULL)),
    CHECK ((state IN ('queued', 'sent')) = (done_at IS NULL))
);
-- the pusher's work: commands still to deliver, per board in order
CREATE INDEX device_commands_open_idx ON device_commands (device_id, id)
    WHERE state IN ('queued', 'sent');
-- a board's history, newest first (GET /api/v1/devices/{id}/commands)
CREATE INDEX device_commands_device_idx ON device_commands (device_id, id DESC);

-- 2. menus: a school's planned sets, per local date and meal period (the board's meal_periods
--    names), the dishes in order (the first is the set's main dish: the board reports it as the
--    event's `dish`). Several dishes make one set: blocked when any dish's allergens hit, priced
--    as the sum of the dishes (D27-A).
CREATE TABLE menus (
    school_id   text NOT NULL REFERENCES schools (id),
    day         date NOT NULL,
    period      text NOT NULL CHECK (period ~ '^[a-z][a-z0-9_]{0,15}$'),
    dish_ids    bigint[] NOT NULL
                CHECK (cardinality(dish_ids) BETWEEN 1 AND 8
                       AND array_position(dish_ids, NULL) IS NULL),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  bigint REFERENCES users (id),
    PRIMARY KEY (school_id, day, period)
);

-- 3. one price source (0019): a receipt whose dish is the main dish of a planned set that day is
--    priced as that set (the sum of its dishes), which is what the board charged; otherwise as
--    before (0009): the dish's price, or the category's price.
CREATE OR REPLACE FUNCTION meal_receipt_price(r meal_receipts) RETURNS meal_receipts
LANGUAGE plpgsql STABLE AS $$
DECLARE
    code smallint := CASE WHEN r.meal_category IN (1, 2, 3) THEN r.meal_category ELSE 3 END;
    dish_price numeric;
BEGIN
    SELECT p.price, p.paid INTO r.price, r.family_pays
    FROM meal_price_at(r.school_id, code, r.occurred_at) p;
    IF r.dish_id IS NOT NULL THEN
        SELECT sum(d.price) INTO dish_price
        FROM (SELECT m.dish_ids FROM menus m
              WHERE m.school_id = r.school_id AND m.day = r.day AND m.dish_ids[1] = r.dish_id
              ORDER BY m.period LIMIT 1) s
        CROSS JOIN LATERAL unnest(s.dish_ids) AS u(id)
        JOIN dishes d ON d.id = u.id;
        IF dish_price IS NULL THEN
            SELECT d.price INTO dish_price FROM dishes d WHERE d.id = r.dish_id;
        END IF;
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
