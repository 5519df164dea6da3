-- 0031: dish photos kept by us (issue #15 "Menu planner", D28-D). An upload is decoded, turned
-- upright, stripped of its metadata and re-encoded (cloud/domain/dish_photos.py); both sizes are
-- kept here, in the database, so a backup of the database is a backup of the photos and every
-- API process serves them without a shared disk. key = the first 32 hex of the SHA-256 of the
-- 800 px JPEG: the URL (/media/dishes/<key>.jpg) changes with the content, so it is cached for
-- a year. Dishes name a photo by that URL (dishes.photo_url); the same bytes are kept once.
CREATE TABLE dish_photos (
    key          text PRIMARY KEY CHECK (key ~ '^[0-9a-f]{32}$'),
    school_id    text NOT NULL REFERENCES schools (id),  -- the school that uploaded it first
    full_jpeg    bytea NOT NULL CHECK (length(full_jpeg) BETWEEN 1 AND 4194304),
    thumb_jpeg   bytea NOT NULL CHECK (length(thumb_jpeg) BETWEEN 1 AND 1048576),
    width        integer NOT NULL CHECK (width BETWEEN 1 AND 800),
    height       integer NOT NULL CHECK (height BETWEEN 1 AND 800),
    uploaded_by  bigint REFERENCES users (id) ON DELETE SET NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dish_photos_school_idx ON dish_photos (school_id);
