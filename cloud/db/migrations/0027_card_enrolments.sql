-- 0027: enrolling a card by tapping it at a reader (issue #15 "People and cards", D28-A).
--
-- A school admin picks a reader of the person's school and presses "Enrol by tap"; the console
-- then waits for the first tap of a card unknown to that reader that happened after the press.
-- The ingest already stores such taps as events (reason unknown_card, the card's key), so nothing
-- new runs on the board. This row keeps when the wait began (the server's clock, never the
-- browser's), the reader, and the card the server found, so the confirmation adds exactly that
-- card and a page cannot choose an older tap.
CREATE TABLE card_enrolments (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id     bigint NOT NULL REFERENCES people (id),
    device_id     text NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    started_by    bigint REFERENCES users (id) ON DELETE SET NULL,
    started_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    card_key      text CHECK (card_key ~ '^[0-9a-f]{16}$'),  -- the tapped card, once found
    tapped_at     timestamptz,
    confirmed_at  timestamptz,
    CHECK (expires_at > started_at),
    CHECK ((card_key IS NULL) = (tapped_at IS NULL)),
    CHECK (confirmed_at IS NULL OR card_key IS NOT NULL)
);
CREATE INDEX card_enrolments_person_idx ON card_enrolments (person_id, started_at DESC);
