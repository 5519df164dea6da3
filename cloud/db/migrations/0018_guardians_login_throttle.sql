-- 0018: which guardians a school may link, and login throttling (issue #13 items 3 and 4,
-- decision D24-D).

-- 1. The school whose admin created an account (guardians have no school of their own: they
--    follow their children). A school may link a guardian it created or one already linked to
--    a person of the school; any other account id answers as if it did not exist.
ALTER TABLE users ADD COLUMN created_by_school text REFERENCES schools (id);
CREATE INDEX users_created_by_school_idx ON users (created_by_school)
    WHERE created_by_school IS NOT NULL;
-- accounts created through the API before this migration: the creating admin's school, from
-- the audit log
UPDATE users u SET created_by_school = actor.school_id
FROM audit_log a JOIN users actor ON actor.id = a.actor_id
WHERE a.entity = 'users' AND a.action = 'create' AND a.entity_id = u.id::text
  AND actor.role = 'school_admin' AND actor.school_id IS NOT NULL;

-- 2. Failed-login counters of the `limits` library's fixed windows (cloud/auth/throttle.py):
--    one row per (account or client address, window), keyed by the SHA-256 of the limit's key,
--    so neither e-mails nor addresses are kept here. Shared by every API process.
CREATE TABLE login_throttle (
    key         bytea PRIMARY KEY CHECK (length(key) = 32),
    hits        integer NOT NULL CHECK (hits >= 0),
    expires_at  double precision NOT NULL  -- seconds since the epoch: the window's end
);
CREATE INDEX login_throttle_expires_idx ON login_throttle (expires_at);

-- 3. The audit log of failed and refused (throttled) logins. Successful logins stay in
--    audit_log (action 'login').
CREATE TABLE login_attempts (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at             timestamptz NOT NULL DEFAULT now(),
    email          text NOT NULL CHECK (length(email) <= 254),  -- as typed, lower-cased
    client         text NOT NULL CHECK (length(client) <= 64),  -- the client's address
    user_id        bigint REFERENCES users (id) ON DELETE SET NULL,  -- NULL: no such account
    outcome        text NOT NULL CHECK (outcome IN ('failed', 'refused')),
    retry_after_s  integer CHECK (retry_after_s > 0)  -- refused: the Retry-After given
);
CREATE INDEX login_attempts_at_idx ON login_attempts (at);
CREATE INDEX login_attempts_email_idx ON login_attempts (email, at);
CREATE INDEX login_attempts_client_idx ON login_attempts (client, at);
