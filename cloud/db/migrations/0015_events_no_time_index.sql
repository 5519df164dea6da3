-- 0015: one index fewer to update per stored event (D23).
--
-- The global time index served one query: the newest events across several schools (the
-- operator's list, a district's). Every tap in the region paid for it (one of four B-tree
-- insertions per event, ~a fifth of a replay's throughput, docs/decisions.md D23). The API now
-- lists across schools by taking each school's newest from (school_id, occurred_at) and merging
-- them (cloud/api/events.py), so the index is no longer read.
DROP INDEX events_occurred_idx;

-- A TimescaleDB hypertable gets a time index of its own by default; one set of indexes for both
-- flavours (0002).
DROP INDEX IF EXISTS events_occurred_at_idx;
