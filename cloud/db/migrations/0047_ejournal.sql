-- 0047: schools connected to an e-journal (issue #17 part 2, D29-I, docs/integrations.md).
-- Which schools send their days, under which id the e-journal knows each, and from what local
-- time an arrival counts as late. A day goes out as an outbox row of kind 'ejournal_day',
-- keyed by school, day and revision (a corrected day is sent again as a new revision).
CREATE TABLE ejournal_schools (
    school_id    text PRIMARY KEY REFERENCES schools (id) ON DELETE CASCADE,
    external_id  text NOT NULL CHECK (length(external_id) BETWEEN 1 AND 100),
    starts_at    time NOT NULL DEFAULT '08:30',
    added_at     timestamptz NOT NULL DEFAULT now()
);
