-- 0014: a cheaper row for every stored event (D21).
--
-- 1. The ingest corrects clocks itself. The BEFORE INSERT trigger of 0008 looked up the boot's
--    reference pair for every unsynced row, and any BEFORE ROW trigger keeps COPY from inserting
--    a partition's rows in batches. The ingest, the only writer of events, now sets
--    occurred_at_corrected on insert: the insert statement joins device_clock_refs and calls
--    clock_corrected(); the bulk COPY path computes the same value
--    (cloud.ingest.clock.clock_corrected, tested against the SQL function). Events stored
--    before their boot's reference pair was known are still corrected by the status consumer.
DROP TRIGGER events_clock_correct ON events;
DROP FUNCTION events_clock_correct();

-- 2. One index fewer to update per event: a device's events are found by the primary key
--    (device_id, boot, seq, occurred_at), whose leading column is the device; the API's
--    "newest first" for one device sorts that device's rows of the newest partition.
DROP INDEX events_device_occurred_idx;
