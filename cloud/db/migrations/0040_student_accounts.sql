-- 0040: a student's own account (issue #16 "For a student", D28-O). A student user belongs to
-- one school and is linked (student_accounts) to exactly one person: a pupil (kind 'student') of
-- that school; one account per pupil. The school hands the pupil a one-time sign-in code (only
-- its SHA-256 is kept, as sessions and guardian invitations do); with it the pupil sets a
-- password once.
-- Each school keeps a short list of learning resources the student app's "Learning" tab links.
ALTER TABLE users DROP CONSTRAINT users_role_check;
ALTER TABLE users ADD CONSTRAINT users_role_check CHECK (role IN ('platform_admin',
    'district_authority', 'school_admin', 'canteen_operator', 'technician', 'guardian',
    'student'));
ALTER TABLE users DROP CONSTRAINT users_scope;
ALTER TABLE users ADD CONSTRAINT users_scope CHECK (CASE role
    WHEN 'platform_admin' THEN district_id IS NULL AND school_id IS NULL
    WHEN 'guardian' THEN district_id IS NULL AND school_id IS NULL
    WHEN 'district_authority' THEN district_id IS NOT NULL AND school_id IS NULL
    WHEN 'school_admin' THEN district_id IS NULL AND school_id IS NOT NULL
    WHEN 'canteen_operator' THEN district_id IS NULL AND school_id IS NOT NULL
    WHEN 'technician' THEN (district_id IS NULL) <> (school_id IS NULL)
    WHEN 'student' THEN district_id IS NULL AND school_id IS NOT NULL
END);
-- the account's pupil: a link table like guardian_students, so the data-subject export lists
-- the link (not the account's password hash) and erasure deletes it (D28-K, D28-O)
CREATE TABLE student_accounts (
    user_id    bigint PRIMARY KEY REFERENCES users (id),
    person_id  bigint NOT NULL UNIQUE REFERENCES people (id)
);

-- the account must be a student's and the person a pupil of the account's school (a CHECK
-- cannot look at another table)
CREATE FUNCTION student_accounts_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM users u JOIN people pe ON pe.school_id = u.school_id
         WHERE u.id = NEW.user_id AND u.role = 'student' AND pe.id = NEW.person_id
           AND pe.kind = 'student') THEN
        RAISE EXCEPTION 'a student account must name a pupil of its own school'
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER student_accounts_check BEFORE INSERT OR UPDATE ON student_accounts
    FOR EACH ROW EXECUTE FUNCTION student_accounts_check();

CREATE TABLE student_codes (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code_hash   bytea NOT NULL UNIQUE CHECK (length(code_hash) = 32),
    student_id  bigint NOT NULL REFERENCES users (id),
    created_by  bigint REFERENCES users (id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    revoked_at  timestamptz,
    CHECK (expires_at > created_at)
);
CREATE INDEX student_codes_student_idx ON student_codes (student_id);
-- at most one live code per student: printing a new one revokes the older
CREATE UNIQUE INDEX student_codes_one_open_idx ON student_codes (student_id)
    WHERE used_at IS NULL AND revoked_at IS NULL;

CREATE TABLE learning_resources (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    school_id  text NOT NULL REFERENCES schools (id),
    position   integer NOT NULL CHECK (position BETWEEN 0 AND 99),
    title      text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    url        text NOT NULL CHECK (url ~ '^https?://[^\s]+$' AND length(url) <= 2000),
    UNIQUE (school_id, position)
);
