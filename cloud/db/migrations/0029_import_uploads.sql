-- 0029: the console's import wizard keeps the file it checked (issue #15, D28-B). The dry run
-- stores the uploaded bytes under their SHA-256; "Apply" names that upload and its hash, and the
-- server applies exactly those bytes (a changed file is a new upload and is checked again).
-- Uploads are short-lived: the wizard deletes its school's uploads older than a day.
CREATE TABLE import_uploads (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    school_id    text NOT NULL REFERENCES schools (id),
    kind         text NOT NULL CHECK (kind IN ('students', 'staff', 'guardians')),
    sha256       bytea NOT NULL CHECK (length(sha256) = 32),
    filename     text NOT NULL DEFAULT '' CHECK (length(filename) <= 200),
    data         bytea NOT NULL,
    uploaded_by  bigint REFERENCES users (id) ON DELETE SET NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    applied_at   timestamptz,
    result       jsonb  -- what the real run changed (the result page's counts)
);
CREATE INDEX import_uploads_school_idx ON import_uploads (school_id, created_at);
