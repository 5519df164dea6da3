-- 0020: the per-device ack key (protocol.md "Ack", issue #13 item 6, docs/decisions.md D24-B).
--
-- Provisioning makes a random 32-byte key, gives it to the board once (device.json "ack_key") and
-- keeps it here for the ingest, which puts HMAC-SHA256(key, "DEVICE|BOOT|FIRST|LAST") (16 bytes,
-- hex) into every ack; a board with a key ignores an ack without it. NULL: a board provisioned
-- before this migration (its acks go without a mac until it is provisioned again).
ALTER TABLE device_credentials
    ADD COLUMN ack_key bytea CHECK (ack_key IS NULL OR length(ack_key) = 32);
