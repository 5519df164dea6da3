-- 0033: the last status a board published while online (D28-E). A board's last will replaces
-- device_status.status with {"v":1,"online":false}, so the console's fleet could not show an
-- offline board's last known firmware, journal, clock, network and errors. The whitelist
-- worker's record_status keeps the last online document here; nothing else reads or writes it.
ALTER TABLE device_status ADD COLUMN last_online jsonb;
UPDATE device_status SET last_online = status WHERE online;
