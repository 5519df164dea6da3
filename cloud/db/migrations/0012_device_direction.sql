-- 0012: where a device stands in the flow of people (issue #5: devices have a direction).
--
-- `direction` is the device's configured placement: 'in' (an entrance reader), 'out' (an exit
-- reader) or 'both' (a turnstile or door with a reader on each side, a canteen counter, or not
-- said). It records the installation and is not sent to the board; it does not replace the
-- per-tap `events.reader` ('in'/'out'/'canteen'), which the board sets for every tap from the
-- reader that read the card. Existing devices become 'both': nothing about their placement was
-- recorded, and 'both' claims nothing. A text column with a CHECK, like `mode` beside it.
ALTER TABLE devices
    ADD COLUMN direction text NOT NULL DEFAULT 'both'
        CHECK (direction IN ('in', 'out', 'both'));
