-- 0026: one-time invitation links for guardians (issue #15 "guardian invitations", issue #16
-- sign-in; D27-F). A school admin makes one; the guardian opens the link, sets a password and is
-- signed in. Only the SHA-256 of the link's token is kept (as sessions do), so a leaked table
-- opens nothing. A link works once, until it expires, and only while it is the guardian's
-- newest: making a new one revokes the older ones.
CREATE TABLE guardian_invitations (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_hash   bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    guardian_id  bigint NOT NULL REFERENCES users (id),
    created_by   bigint REFERENCES users (id) ON DELETE SET NULL,
    school_id    text REFERENCES schools (id),  -- the inviting admin's school (NULL: platform)
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    used_at      timestamptz,
    revoked_at   timestamptz,
    CHECK (expires_at > created_at)
);
CREATE INDEX guardian_invitations_guardian_idx ON guardian_invitations (guardian_id);
-- at most one live invitation per guardian
CREATE UNIQUE INDEX guardian_invitations_one_open_idx ON guardian_invitations (guardian_id)
    WHERE used_at IS NULL AND revoked_at IS NULL;
