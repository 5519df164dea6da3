-- 0044: what the OpenID Connect provider issues (issue #17 part 1, D29-F): authorization codes
-- (one use, short-lived, PKCE S256), access tokens and refresh tokens. Only SHA-256 digests are
-- kept, as sessions do. Refresh tokens rotate: each use marks the token used and issues a new one
-- of the same family; presenting a used token again revokes the whole family (and its access
-- tokens), RFC 9700 §4.14.2.
CREATE TABLE oidc_codes (
    code_hash       bytea PRIMARY KEY CHECK (length(code_hash) = 32),
    client_id       text NOT NULL REFERENCES oidc_clients (client_id),
    user_id         bigint NOT NULL REFERENCES users (id),
    redirect_uri    text NOT NULL,
    scope           text NOT NULL,
    nonce           text CHECK (length(nonce) <= 200),
    code_challenge  text NOT NULL CHECK (code_challenge ~ '^[A-Za-z0-9_-]{43}$'),
    auth_time       timestamptz NOT NULL,
    family          uuid NOT NULL,  -- the tokens issued for it, revoked if the code is reused
    expires_at      timestamptz NOT NULL,
    used_at         timestamptz
);
CREATE INDEX oidc_codes_expires_idx ON oidc_codes (expires_at);

CREATE TABLE oidc_access_tokens (
    token_hash  bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    client_id   text NOT NULL REFERENCES oidc_clients (client_id),
    user_id     bigint NOT NULL REFERENCES users (id),
    scope       text NOT NULL,
    family      uuid NOT NULL,
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz
);
CREATE INDEX oidc_access_tokens_family_idx ON oidc_access_tokens (family);
CREATE INDEX oidc_access_tokens_expires_idx ON oidc_access_tokens (expires_at);

CREATE TABLE oidc_refresh_tokens (
    token_hash  bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    client_id   text NOT NULL REFERENCES oidc_clients (client_id),
    user_id     bigint NOT NULL REFERENCES users (id),
    scope       text NOT NULL,
    family      uuid NOT NULL,
    auth_time   timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    revoked_at  timestamptz
);
CREATE INDEX oidc_refresh_tokens_family_idx ON oidc_refresh_tokens (family);
CREATE INDEX oidc_refresh_tokens_expires_idx ON oidc_refresh_tokens (expires_at);
