-- 0041: the retention job's manifest of archived event months (issue #18 "Retention", D29-B).
--
-- One row per month of events the job has written to an archive file (cloud/retention/): the
-- binary COPY of the month's partition, its SHA-256 and row count, read back and checked before
-- the partition is detached and dropped. The row outlives the partition: it is how a month is
-- found again (`qadam retention restore 2023-09`) and why the job never archives a dropped month
-- over its only copy.
CREATE TABLE event_archives (
    month        date PRIMARY KEY CHECK (month = date_trunc('month', month)::date),
    partition    text NOT NULL CHECK (partition ~ '^events_p[0-9]{6}$'),
    file_name    text NOT NULL CHECK (file_name ~ '^events-[0-9]{4}-[0-9]{2}\.pgcopy$'),
    columns      text[] NOT NULL CHECK (cardinality(columns) > 0),
    row_count    bigint NOT NULL CHECK (row_count >= 0),
    byte_count   bigint NOT NULL CHECK (byte_count > 0),
    sha256       text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    -- archived: the file is written and checked, the partition is still online;
    -- dropped: the partition is gone, the file is the month's only copy;
    -- restored: loaded back from the file; not archived again before hold_until
    state        text NOT NULL CHECK (state IN ('archived', 'dropped', 'restored')),
    archived_at  timestamptz NOT NULL DEFAULT now(),
    verified_at  timestamptz,  -- NULL: rows changed after the archive; it is written again
    dropped_at   timestamptz,
    restored_at  timestamptz,
    hold_until   timestamptz,
    CHECK (state <> 'dropped' OR (dropped_at IS NOT NULL AND verified_at IS NOT NULL)),
    CHECK (state <> 'restored' OR (restored_at IS NOT NULL AND hold_until IS NOT NULL))
);
