-- 0049: how a person was identified when not by a card (issue #17, D29-J "Alternative
-- identification"): 'qr' (the app's dynamic code at a scanner) or 'pin' (a keypad); NULL for a
-- card, and for every event stored before. Boards send it as the event's "method" key
-- (protocol.md); the ingest stores it, the API and the app show it. Added to the partitioned
-- table, so every monthly partition (and the DEFAULT one) gets it; no rewrite (no default).
ALTER TABLE events ADD COLUMN method text CHECK (method IS NULL OR method IN ('qr', 'pin'));
