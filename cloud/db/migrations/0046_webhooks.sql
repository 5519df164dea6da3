-- 0046: signed webhooks for other systems (issue #17 part 2, D29-I, docs/integrations.md).
--
-- * webhook_hosts: per school, the host names a subscriber's URL may point at. Kept by the
--   district or platform admin, so a school admin cannot aim our workers at any address.
-- * webhook_subscriptions: a URL (https), the event kinds it wants and the HMAC secret we sign
--   with. The secret is kept as is (D29-I says why): we must have it to sign.
-- * Outbox rows of kind 'webhook', one per subscriber and event (or run of taps), written in
--   the transaction that makes the event: taps by the ingest (cloud/ingest/derive.py), a board
--   going offline and a report approved by the triggers below. A school without subscribers
--   gets no row.

CREATE TABLE webhook_hosts (
    school_id  text NOT NULL REFERENCES schools (id) ON DELETE CASCADE,
    host       text NOT NULL CHECK (host ~ '^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$'
                                    AND length(host) <= 253),
    added_by   bigint REFERENCES users (id) ON DELETE SET NULL,
    added_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (school_id, host)
);

CREATE TABLE webhook_subscriptions (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    school_id   text NOT NULL REFERENCES schools (id) ON DELETE CASCADE,
    url         text NOT NULL CHECK (length(url) BETWEEN 8 AND 2048),
    events      text[] NOT NULL CHECK (cardinality(events) > 0 AND events <@
                    ARRAY['passage', 'meal', 'device_offline', 'report_approved']::text[]),
    secret      text NOT NULL CHECK (length(secret) >= 32),
    created_by  bigint REFERENCES users (id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    rotated_at  timestamptz
);
CREATE INDEX webhook_subscriptions_school_idx ON webhook_subscriptions (school_id);

-- A board's last will turns online to false: one row per subscriber of its school.
CREATE FUNCTION webhook_device_offline() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbox (kind, idempotency_key, payload)
    SELECT 'webhook',
           format('wh:%s:device_offline:%s:%s', s.id, NEW.device_id,
                  (extract(epoch FROM clock_timestamp()) * 1000000)::int8),
           jsonb_build_object('subscription_id', s.id, 'school_id', d.school_id,
                              'event', 'device_offline',
                              'data', jsonb_build_object('device_id', NEW.device_id,
                                                         'last_seen', NEW.last_seen,
                                                         'at', now()))
    FROM devices d JOIN webhook_subscriptions s ON s.school_id = d.school_id
    WHERE d.id = NEW.device_id AND 'device_offline' = ANY (s.events)
    ON CONFLICT (idempotency_key) DO NOTHING;
    RETURN NULL;
END $$;

CREATE TRIGGER device_status_webhook AFTER UPDATE OF online ON device_status
FOR EACH ROW WHEN (OLD.online AND NOT NEW.online)
EXECUTE FUNCTION webhook_device_offline();

-- A monthly report signed off: one row per subscriber of its school (approving is once).
CREATE FUNCTION webhook_report_approved() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbox (kind, idempotency_key, payload)
    SELECT 'webhook', format('wh:%s:report_approved:%s', s.id, NEW.id),
           jsonb_build_object('subscription_id', s.id, 'school_id', NEW.school_id,
                              'event', 'report_approved',
                              'data', jsonb_build_object('report_id', NEW.id,
                                                         'month', to_char(NEW.month, 'YYYY-MM'),
                                                         'kind', NEW.kind,
                                                         'approved_at', NEW.approved_at))
    FROM webhook_subscriptions s
    WHERE s.school_id = NEW.school_id AND 'report_approved' = ANY (s.events)
    ON CONFLICT (idempotency_key) DO NOTHING;
    RETURN NULL;
END $$;

CREATE TRIGGER reports_webhook AFTER UPDATE OF status ON reports
FOR EACH ROW WHEN (OLD.status = 'draft' AND NEW.status = 'approved')
EXECUTE FUNCTION webhook_report_approved();
