-- 0017: a turnstile grant nobody walked through (issue #13 item 8, docs/ingest.md "Derived rows").
--
-- A turnstile writes a "not_passed" event (protocol.md "Event reasons") naming the seq of the
-- granted tap nobody walked through (`ref`, same device and boot). That tap's passage is
-- withdrawn: it no longer counts in attendance (so not in the reports' presence either) and its
-- parent notification is not sent if it is still pending. One row per withdrawn tap, keyed like
-- the tap; written by the ingest in the transaction that stores the not_passed event, read by
-- the ingest (a tap that arrives after its not_passed is never counted) and by the outbox worker.
CREATE TABLE passage_withdrawals (
    device_id  text NOT NULL,
    boot       bigint NOT NULL CHECK (boot >= 0),
    seq        bigint NOT NULL CHECK (seq >= 1),   -- the granted tap's
    by_seq     bigint NOT NULL CHECK (by_seq >= 1), -- the not_passed event's
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, boot, seq)
);
