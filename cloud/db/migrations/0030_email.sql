-- 0030: e-mail (issue #15 "invitation by e-mail", issue #16 "forgot password"; D28-B).
--
-- * email_messages: what is to be sent. Each row has one outbox row (kind 'email', payload
--   {"email_id": N}), so the outbox worker's claim, lease, retries and dead letters carry it
--   (invariant 6). The body holds a one-time link, so it is cleared once the mail is sent or
--   dead; only the address, subject, purpose and times stay for the record.
-- * password_resets: one-time links to set a new password. Only the token's SHA-256 is kept;
--   a link works once and for an hour, and only while it is the user's newest.
CREATE TABLE email_messages (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    to_addr      text NOT NULL CHECK (length(to_addr) BETWEEN 3 AND 254),
    subject      text NOT NULL CHECK (length(subject) <= 300),
    body         text,  -- NULL once sent or dead (it carried a one-time link)
    locale       text NOT NULL CHECK (locale IN ('kk', 'ru', 'en')),
    purpose      text NOT NULL CHECK (purpose IN ('password_reset', 'invitation')),
    user_id      bigint REFERENCES users (id) ON DELETE SET NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    sent_at      timestamptz
);
CREATE INDEX email_messages_user_idx ON email_messages (user_id);

CREATE TABLE password_resets (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_hash   bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    user_id      bigint NOT NULL REFERENCES users (id),
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    used_at      timestamptz,
    revoked_at   timestamptz,
    CHECK (expires_at > created_at)
);
CREATE INDEX password_resets_user_idx ON password_resets (user_id);
CREATE UNIQUE INDEX password_resets_one_open_idx ON password_resets (user_id)
    WHERE used_at IS NULL AND revoked_at IS NULL;
