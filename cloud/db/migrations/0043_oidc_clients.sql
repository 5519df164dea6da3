-- 0043: we are an OpenID Connect provider (issue #17 part 1, D29-F). Relying parties
-- (e-textbook and learning platforms) are registered by a platform admin: exact redirect URIs,
-- the scopes (claims) the platform may receive, a secret of which only the SHA-256 is kept, and
-- a per-client salt for the pairwise `sub` (HMAC of the user id), so two platforms cannot join
-- their users.
CREATE TABLE oidc_clients (
    client_id        text PRIMARY KEY CHECK (client_id ~ '^[A-Za-z0-9_-]{16,64}$'),
    name             text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    secret_hash      bytea NOT NULL CHECK (length(secret_hash) = 32),
    redirect_uris    text[] NOT NULL CHECK (cardinality(redirect_uris) BETWEEN 1 AND 10),
    post_logout_redirect_uris text[] NOT NULL DEFAULT '{}'
                     CHECK (cardinality(post_logout_redirect_uris) <= 10),
    scopes           text[] NOT NULL CHECK ('openid' = ANY (scopes)
                     AND scopes <@ ARRAY['openid', 'role', 'school', 'class', 'locale',
                                         'offline_access']),
    sector_salt      bytea NOT NULL CHECK (length(sector_salt) = 32),
    created_by       bigint REFERENCES users (id),
    created_at       timestamptz NOT NULL DEFAULT now(),
    disabled_at      timestamptz
);

-- the schools that enabled a platform: their students' Learning tab lists it
CREATE TABLE oidc_client_schools (
    client_id   text NOT NULL REFERENCES oidc_clients (client_id),
    school_id   text NOT NULL REFERENCES schools (id),
    -- https; plain http only on loopback (development and tests)
    launch_url  text NOT NULL CHECK ((launch_url ~ '^https://[^\s]+$'
                OR launch_url ~ '^http://(127\.0\.0\.1|localhost)(:[0-9]+)?/[^\s]*$')
                AND length(launch_url) <= 500),
    PRIMARY KEY (client_id, school_id)
);

-- the signing keys of ID tokens (RS256). The newest unretired key signs; a retired key stays in
-- the JWKS until publish_until (its last token's expiry), then is dropped.
CREATE TABLE oidc_signing_keys (
    kid            text PRIMARY KEY CHECK (kid ~ '^[A-Za-z0-9_-]{8,64}$'),
    private_pem    text NOT NULL,
    public_jwk     jsonb NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    retired_at     timestamptz,
    publish_until  timestamptz,
    CHECK ((retired_at IS NULL) = (publish_until IS NULL))
);

-- a user's consent to a platform receiving the named scopes; guardians see the platforms their
-- child used (last_used_at)
CREATE TABLE oidc_consents (
    user_id       bigint NOT NULL REFERENCES users (id),
    client_id     text NOT NULL REFERENCES oidc_clients (client_id),
    scopes        text[] NOT NULL,
    granted_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, client_id)
);
