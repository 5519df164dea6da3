-- Web Push (RFC 8030/8291/8292) to guardians and school staff (docs/push.md).
--
-- A browser or the parent app subscribes at a push service and hands us the subscription
-- (endpoint URL + the client's P-256 public key + auth secret). The outbox worker encrypts each
-- notification for each subscription of its recipients and POSTs it to the endpoint.

CREATE TABLE push_subscriptions (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    endpoint     text NOT NULL CHECK (endpoint ~ '^https?://' AND length(endpoint) <= 2048),
    p256dh       bytea NOT NULL CHECK (length(p256dh) = 65),
    auth         bytea NOT NULL CHECK (length(auth) = 16),
    lang         text NOT NULL DEFAULT 'ru' CHECK (lang IN ('kk', 'ru', 'en')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_ok_at   timestamptz,
    -- The push service answered 404/410: the subscription is dead and is never used again.
    gone_at      timestamptz
);
-- One row per endpoint: re-subscribing the same browser replaces its keys, never duplicates.
CREATE UNIQUE INDEX push_subscriptions_endpoint_idx ON push_subscriptions (endpoint);
CREATE INDEX push_subscriptions_user_idx ON push_subscriptions (user_id) WHERE gone_at IS NULL;

-- What each outbox notification already reached: a retried notification goes only to the
-- subscriptions that did not get it yet (a push service does not dedupe for us).
CREATE TABLE push_deliveries (
    idempotency_key  text NOT NULL,
    subscription_id  bigint NOT NULL REFERENCES push_subscriptions (id) ON DELETE CASCADE,
    status           smallint NOT NULL,  -- the push service's HTTP status (201, or 404/410/4xx)
    delivered_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (idempotency_key, subscription_id)
);
