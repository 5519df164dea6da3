-- 0037: a guardian's notification settings (issue #16, D28-H): which kinds of notice they want
-- and their quiet hours; the notices held during quiet hours until one summary goes out.
--
-- No row: everything on, no quiet hours (what every guardian had before this migration).
CREATE TABLE notification_settings (
    user_id      bigint PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    attendance   boolean NOT NULL DEFAULT true,   -- arrivals, departures, late-tap summaries
    meals        boolean NOT NULL DEFAULT true,   -- canteen taps
    low_balance  boolean NOT NULL DEFAULT true,
    -- local times in the child's school's zone; from > to spans midnight (22:00-07:00)
    quiet_from   time,
    quiet_to     time,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CHECK ((quiet_from IS NULL) = (quiet_to IS NULL)),
    CHECK (quiet_from IS NULL OR quiet_from <> quiet_to)
);

-- A notice that reached a guardian inside their quiet hours: kept here, not pushed. One outbox
-- row of kind 'quiet_summary' per guardian and end of quiet hours (next_attempt_at = that end)
-- pushes them as one summary; released_at is set when it went out.
CREATE TABLE push_held (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id          bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    idempotency_key  text NOT NULL,  -- the notice's own key: a retried notice is held once
    kind             text NOT NULL,
    fields           jsonb NOT NULL, -- what cloud/push/texts.py renders, in the phone's language
    held_at          timestamptz NOT NULL DEFAULT now(),
    release_at       timestamptz NOT NULL,
    released_at      timestamptz,
    UNIQUE (user_id, idempotency_key)
);
CREATE INDEX push_held_pending_idx ON push_held (user_id, release_at) WHERE released_at IS NULL;
