-- Siren schema version 2: credential stamps (issue 11, F3).
--
-- An account's `credential_stamp` changes whenever its credential is replaced (a new
-- password), never when it is only re-encoded; a session remembers the stamp its login saw,
-- and is resumable only while the account still has it. Both are unsigned 64-bit numbers
-- stored as bigint (two's complement above 2^63 - 1). Accounts and sessions from before this
-- migration get stamp 0: they stay valid until the password changes. A session's stamp is
-- NULL when its login was not decided by the credential backend (a certificate), and before
-- login.

ALTER TABLE accounts ADD COLUMN credential_stamp bigint NOT NULL DEFAULT 0;

ALTER TABLE sessions ADD COLUMN credential_stamp bigint;
UPDATE sessions SET credential_stamp = 0 WHERE username IS NOT NULL;

-- Deleting a user's sessions (the account was deleted or its password changed).
CREATE INDEX sessions_username ON sessions (username);
