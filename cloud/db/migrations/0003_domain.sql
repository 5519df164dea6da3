-- 0003: the domain model behind the API: regions -> districts -> schools -> classes, people with
-- cards and guardians, users and sessions (auth), dishes, meal categories and eligibility,
-- allergen restrictions, meal ratings, consents for alternative identification, the audit log.
--
-- Text columns carry length checks so that a bad request fails in the database too, not only in
-- the API models.

-- 1. organisation
CREATE TABLE regions (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE districts (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    region_id   bigint NOT NULL REFERENCES regions (id),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (region_id, name)
);

ALTER TABLE schools ADD COLUMN district_id bigint REFERENCES districts (id);
CREATE INDEX schools_district_idx ON schools (district_id);

CREATE TABLE classes (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    school_id   text NOT NULL REFERENCES schools (id),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 50),
    grade       smallint CHECK (grade BETWEEN 0 AND 12),
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (school_id, name),
    UNIQUE (id, school_id)  -- target of people (class_id, school_id)
);

-- 2. people and cards
ALTER TABLE people
    ADD COLUMN class_id bigint,
    ADD COLUMN external_id text CHECK (length(external_id) BETWEEN 1 AND 100),
    ADD COLUMN active boolean NOT NULL DEFAULT true,
    -- a person's class belongs to the person's school
    ADD CONSTRAINT people_class_fk FOREIGN KEY (class_id, school_id)
        REFERENCES classes (id, school_id);
CREATE UNIQUE INDEX people_school_external_idx ON people (school_id, external_id)
    WHERE external_id IS NOT NULL;
CREATE INDEX people_class_idx ON people (class_id) WHERE class_id IS NOT NULL;

ALTER TABLE cards
    ADD COLUMN revoke_reason text
        CHECK (revoke_reason IN ('lost', 'stolen', 'damaged', 'left', 'other')),
    ADD CONSTRAINT cards_revoked_has_time CHECK (revoke_reason IS NULL OR revoked_at IS NOT NULL);

-- 3. users (every role, guardians included) and sessions
CREATE TABLE users (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email          text NOT NULL CHECK (email = lower(email) AND email ~ '^[^@\s]+@[^@\s]+$'
                                        AND length(email) <= 254),
    password_hash  text NOT NULL,
    full_name      text NOT NULL DEFAULT '' CHECK (length(full_name) <= 200),
    role           text NOT NULL CHECK (role IN ('platform_admin', 'district_authority',
                        'school_admin', 'canteen_operator', 'technician', 'guardian')),
    district_id    bigint REFERENCES districts (id),
    school_id      text REFERENCES schools (id),
    active         boolean NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT now(),
    -- the scope a role needs, and nothing it does not
    CONSTRAINT users_scope CHECK (CASE role
        WHEN 'platform_admin' THEN district_id IS NULL AND school_id IS NULL
        WHEN 'guardian' THEN district_id IS NULL AND school_id IS NULL
        WHEN 'district_authority' THEN district_id IS NOT NULL AND school_id IS NULL
        WHEN 'school_admin' THEN district_id IS NULL AND school_id IS NOT NULL
        WHEN 'canteen_operator' THEN district_id IS NULL AND school_id IS NOT NULL
        WHEN 'technician' THEN (district_id IS NULL) <> (school_id IS NULL)
    END)
);
CREATE UNIQUE INDEX users_email_idx ON users (email);

-- Opaque bearer tokens; only their SHA-256 is stored (D8).
CREATE TABLE sessions (
    token_hash  bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    user_id     bigint NOT NULL REFERENCES users (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz
);
CREATE INDEX sessions_user_idx ON sessions (user_id);

CREATE TABLE guardian_students (
    guardian_id  bigint NOT NULL REFERENCES users (id),
    person_id    bigint NOT NULL REFERENCES people (id),
    relation     text NOT NULL DEFAULT 'parent'
                 CHECK (relation IN ('parent', 'legal_representative', 'other')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (guardian_id, person_id)
);
CREATE INDEX guardian_students_person_idx ON guardian_students (person_id);

-- 4. canteen
CREATE TABLE dishes (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    school_id      text NOT NULL REFERENCES schools (id),
    name_kk        text NOT NULL CHECK (length(name_kk) BETWEEN 1 AND 200),
    name_ru        text NOT NULL CHECK (length(name_ru) BETWEEN 1 AND 200),
    name_en        text NOT NULL DEFAULT '' CHECK (length(name_en) <= 200),
    photo_url      text CHECK (length(photo_url) <= 2000),
    price          numeric(12, 2) NOT NULL CHECK (price >= 0),
    -- the same allergens twice: the bit mask the readers use, the names people read
    allergen_mask  integer NOT NULL DEFAULT 0 CHECK (allergen_mask BETWEEN 0 AND 65535),
    allergens      text[] NOT NULL DEFAULT '{}',
    active         boolean NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dishes_school_idx ON dishes (school_id);

-- code = people.meal_category, the 2-bit value in the whitelist (protocol.md: 0 none, 1 free,
-- 2 reduced, 3 paid), so a school has at most one category of each kind.
CREATE TABLE meal_categories (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    school_id   text NOT NULL REFERENCES schools (id),
    kind        text NOT NULL CHECK (kind IN ('free', 'reduced', 'paid')),
    code        smallint NOT NULL GENERATED ALWAYS AS
                    (CASE kind WHEN 'free' THEN 1 WHEN 'reduced' THEN 2 ELSE 3 END) STORED,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    price       numeric(12, 2) NOT NULL CHECK (price >= 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (school_id, code),
    CHECK (kind <> 'free' OR price = 0)
);

-- Eligibility history; the current category is also copied to people.meal_category.
CREATE TABLE meal_eligibility (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id    bigint NOT NULL REFERENCES people (id),
    category_id  bigint NOT NULL REFERENCES meal_categories (id),
    valid_from   date NOT NULL,
    valid_until  date,
    granted_by   bigint REFERENCES users (id),
    created_at   timestamptz NOT NULL DEFAULT now(),
    CHECK (valid_until IS NULL OR valid_until >= valid_from)
);
CREATE INDEX meal_eligibility_person_idx ON meal_eligibility (person_id, valid_from DESC);

-- Allergen restrictions a guardian sets for a child; people.allergen_mask mirrors the mask so
-- the canteen reader blocks such dishes offline.
CREATE TABLE allergen_restrictions (
    person_id      bigint PRIMARY KEY REFERENCES people (id),
    allergen_mask  integer NOT NULL CHECK (allergen_mask BETWEEN 0 AND 65535),
    allergens      text[] NOT NULL DEFAULT '{}',
    note           text NOT NULL DEFAULT '' CHECK (length(note) <= 1000),
    set_by         bigint REFERENCES users (id),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE meal_ratings (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id   bigint NOT NULL REFERENCES people (id),
    dish_id     bigint NOT NULL REFERENCES dishes (id),
    served_on   date NOT NULL,
    score       smallint NOT NULL CHECK (score BETWEEN 1 AND 5),
    comment     text NOT NULL DEFAULT '' CHECK (length(comment) <= 2000),
    rated_by    bigint REFERENCES users (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (person_id, dish_id, served_on)
);
CREATE INDEX meal_ratings_dish_idx ON meal_ratings (dish_id, served_on);

-- 5. consent to alternative identification (cards always remain available)
CREATE TABLE consents (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id     bigint NOT NULL REFERENCES people (id),
    method        text NOT NULL CHECK (method IN ('face', 'fingerprint', 'palm', 'qr', 'pin')),
    granted_by    bigint NOT NULL REFERENCES users (id),
    granted_at    timestamptz NOT NULL DEFAULT now(),
    withdrawn_at  timestamptz,
    withdrawn_by  bigint REFERENCES users (id),
    CHECK ((withdrawn_at IS NULL) = (withdrawn_by IS NULL))
);
-- at most one live consent per person and method
CREATE UNIQUE INDEX consents_live_idx ON consents (person_id, method) WHERE withdrawn_at IS NULL;

-- 6. audit: one row per change made through the API, in the same transaction as the change
CREATE TABLE audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor_id    bigint REFERENCES users (id),
    actor       text NOT NULL,
    action      text NOT NULL CHECK (action IN ('create', 'update', 'delete', 'revoke',
                    'withdraw', 'link', 'unlink', 'login', 'logout')),
    entity      text NOT NULL,
    entity_id   text NOT NULL,
    school_id   text,
    before      jsonb,
    after       jsonb
);
CREATE INDEX audit_log_entity_idx ON audit_log (entity, entity_id, at);
CREATE INDEX audit_log_school_idx ON audit_log (school_id, at) WHERE school_id IS NOT NULL;
