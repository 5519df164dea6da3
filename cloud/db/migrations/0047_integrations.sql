-- 0047: schools connected to an e-journal, and platforms' machine clients (issue #17 part 2,
-- D29-I, docs/integrations.md).
--
-- Which schools send their days, under which id the e-journal knows each, and from what local
-- time an arrival counts as late. A day goes out as an outbox row of kind 'ejournal_day',
-- keyed by school, day and revision (a corrected day is sent again as a new revision).
CREATE TABLE ejournal_schools (
    school_id    text PRIMARY KEY REFERENCES schools (id) ON DELETE CASCADE,
    external_id  text NOT NULL CHECK (length(external_id) BETWEEN 1 AND 100),
    starts_at    time NOT NULL DEFAULT '08:30',
    added_at     timestamptz NOT NULL DEFAULT now()
);

-- Platforms' machine clients (OAuth2 client credentials, D29-I): a regional or central
-- platform reads the attendance and meals of the schools its registration names, with the
-- scopes it names. Secrets and tokens are kept as SHA-256 digests (32 random bytes each need
-- no slow hash, as for sessions and OIDC clients). Every token issued and every read is in
-- audit_log (actor 'platform:<client_id>').
CREATE TABLE platform_clients (
    client_id    text PRIMARY KEY CHECK (client_id ~ '^pc_[A-Za-z0-9_-]{16,64}$'),
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    secret_hash  bytea NOT NULL CHECK (length(secret_hash) = 32),
    scopes       text[] NOT NULL CHECK (cardinality(scopes) > 0
                     AND scopes <@ ARRAY['attendance.read', 'meals.read']::text[]),
    schools      text[] NOT NULL CHECK (cardinality(schools) > 0),
    created_at   timestamptz NOT NULL DEFAULT now(),
    disabled_at  timestamptz
);

CREATE TABLE platform_tokens (
    token_hash  bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    client_id   text NOT NULL REFERENCES platform_clients (client_id) ON DELETE CASCADE,
    scopes      text[] NOT NULL,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX platform_tokens_expiry_idx ON platform_tokens (expires_at);

-- What became of a webhook subscriber's deliveries (counts and the last error, shown in the
-- console and the API's listing) is read by subscriber, from the outbox's webhook rows only.
CREATE INDEX outbox_webhook_subscriber_idx ON outbox (((payload->>'subscription_id')::int8), id)
    WHERE kind = 'webhook';
