-- 0022: OTA releases and rollouts (issue #14 item 6, docs/ota.md, docs/decisions.md D27-B).
--
-- A release is a firmware image (the ROMFS image `qadam release build` makes) with its version,
-- size, sha256 and the Ed25519 signature of "qadam-ota|VERSION|SIZE|SHA256" made by the release
-- key, which the cloud never holds (it checks the signature with the public key it is configured
-- with). A rollout offers one release to a set of boards: the canaries first; the rest only once
-- every canary confirmed the release; paused automatically when a canary rolls back, fails or
-- does not confirm within the deadline. The OTA worker (cloud/workers/ota_push.py) drives it and
-- keeps each board's reported firmware (version, slot, trial, rolled back) in device_firmware.
CREATE TABLE ota_releases (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    version     text NOT NULL UNIQUE CHECK (version ~ '^[0-9A-Za-z][0-9A-Za-z.+_-]{0,31}$'),
    size        integer NOT NULL CHECK (size BETWEEN 1 AND 1048576),
    sha256      text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    signature   text NOT NULL CHECK (signature ~ '^[0-9a-f]{128}$'),
    image       bytea NOT NULL CHECK (length(image) = size),
    notes       text NOT NULL DEFAULT '',
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ota_rollouts (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    release_id        bigint NOT NULL REFERENCES ota_releases (id),
    -- canary: only the canaries are offered the release; rolling: every target; paused: none
    -- (stage says where it resumes); done: every target confirmed it or gave up; cancelled: an
    -- operator ended it (the targets it had not reached are cancelled too).
    state             text NOT NULL DEFAULT 'canary'
                      CHECK (state IN ('canary', 'rolling', 'paused', 'done', 'cancelled')),
    stage             text NOT NULL DEFAULT 'canary' CHECK (stage IN ('canary', 'rolling')),
    canary_deadline_s integer NOT NULL CHECK (canary_deadline_s BETWEEN 10 AND 604800),
    stage_started_at  timestamptz NOT NULL DEFAULT now(),
    paused_reason     text,
    created_by        text NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ota_targets (
    rollout_id  bigint NOT NULL REFERENCES ota_rollouts (id) ON DELETE CASCADE,
    device_id   text NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    canary      boolean NOT NULL,
    -- pending: not offered yet; offered / downloading / trial (booted on trial) / done
    -- (confirmed); rolled_back (the board went back to its previous image); failed (the board
    -- refused or could not take it: detail says why); cancelled (the rollout was, before this
    -- board confirmed it).
    state       text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'offered',
                'downloading', 'trial', 'done', 'rolled_back', 'failed', 'cancelled')),
    detail      text,
    offered_at  timestamptz,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (rollout_id, device_id)
);
CREATE INDEX ota_targets_device_idx ON ota_targets (device_id);

-- What each board last said about its firmware (its status: protocol.md "Status", "OTA").
CREATE TABLE device_firmware (
    device_id    text PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    version      text,
    slot         text,
    trial        integer,
    rolled_back  text,
    ota          jsonb,
    online       boolean NOT NULL DEFAULT false,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
