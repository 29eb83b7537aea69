-- Siren schema version 1: the typed stores of siren_api::storage.
--
-- Applied by siren-storage-postgres at start-up, inside its migration transaction (do not add
-- BEGIN/COMMIT here). Unsigned 64-bit values are bigint: sequence numbers and versions fit in 63
-- bits (checked), and a time from 2^63 on (only "never" in practice) is stored as its two's
-- complement, a negative number. Usernames sort bytewise (COLLATE "C"), as Siren sorts them.

-- Local user accounts. `credential` is the credential of backends that keep it here (an
-- argon2id PHC string for passwords); NULL if none.
CREATE TABLE accounts (
    username   text COLLATE "C" PRIMARY KEY,
    created    bigint NOT NULL,
    credential text
);

-- Each user's directory chain: entry `seq` (from 1, no gaps) adds or revokes `device`; `entry`
-- is the encoded signed entry.
CREATE TABLE directory_entries (
    username text COLLATE "C" NOT NULL,
    seq      bigint NOT NULL CHECK (seq > 0),
    kind     text NOT NULL CHECK (kind IN ('add', 'revoke')),
    device   bytea NOT NULL CHECK (octet_length(device) = 32),
    entry    bytea NOT NULL,
    PRIMARY KEY (username, seq)
);

-- The last queue sequence number handed out to each device. Never lowered, and kept when the
-- device's items are removed, so a number is never handed out twice.
CREATE TABLE queue_counters (
    device   bytea PRIMARY KEY CHECK (octet_length(device) = 32),
    last_seq bigint NOT NULL CHECK (last_seq > 0)
);

-- Per-device message queues: `item` is the encoded queue item (ciphertext), removed when the
-- device acknowledges it, its device is revoked, or it expires.
CREATE TABLE queue_items (
    device  bytea NOT NULL CHECK (octet_length(device) = 32),
    seq     bigint NOT NULL CHECK (seq > 0),
    expires bigint NOT NULL,
    item    bytea NOT NULL,
    PRIMARY KEY (device, seq)
);
-- Ciphertext does not compress: store it out of line without trying.
ALTER TABLE queue_items ALTER COLUMN item SET STORAGE EXTERNAL;
-- The expiry sweep.
CREATE INDEX queue_items_expires ON queue_items (expires);

-- Each user's current signed roster.
CREATE TABLE rosters (
    username text COLLATE "C" PRIMARY KEY,
    version  bigint NOT NULL CHECK (version >= 0),
    roster   bytea NOT NULL
);

-- Resumable sessions; `username` is NULL until the session logs in.
CREATE TABLE sessions (
    id        bytea PRIMARY KEY CHECK (octet_length(id) = 16),
    device    bytea NOT NULL CHECK (octet_length(device) = 32),
    username  text COLLATE "C",
    last_seen bigint NOT NULL
);
-- The sweep of sessions unused for too long.
CREATE INDEX sessions_last_seen ON sessions (last_seen);
