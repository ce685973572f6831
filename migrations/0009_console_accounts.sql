-- Operator console (issue 12): accounts, sessions and API tokens. Portable SQL as in 0001/0002
-- (TEXT ids chosen by Kav, BIGINT unix ms, INTEGER 0/1 booleans, no foreign keys); runs on
-- SQLite and PostgreSQL.
--
-- role: 'platform_admin' (every business, accounts) | 'owner' | 'staff' (one business:
-- business_id). password_hash is an argon2id PHC string.
CREATE TABLE IF NOT EXISTS console_accounts (
    id            TEXT    NOT NULL PRIMARY KEY,
    email         TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    role          TEXT    NOT NULL,
    business_id   TEXT,
    disabled      INTEGER NOT NULL,
    created_at_ms BIGINT  NOT NULL
);

-- A browser session. The cookie holds a random id; only its SHA-256 is stored, so a database
-- read does not hand out live sessions. csrf_token is the synchronizer token every form and
-- state-changing API call with cookie auth must echo.
CREATE TABLE IF NOT EXISTS console_sessions (
    id_hash       TEXT   NOT NULL PRIMARY KEY,
    account_id    TEXT   NOT NULL,
    csrf_token    TEXT   NOT NULL,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);

CREATE INDEX IF NOT EXISTS console_sessions_account ON console_sessions (account_id);

-- Per-account bearer tokens for scripts (`Authorization: Bearer kav_…`), SHA-256 at rest,
-- revocable (revoked_at_ms set).
CREATE TABLE IF NOT EXISTS console_api_tokens (
    id            TEXT   NOT NULL PRIMARY KEY,
    account_id    TEXT   NOT NULL,
    token_hash    TEXT   NOT NULL UNIQUE,
    label         TEXT   NOT NULL,
    created_at_ms BIGINT NOT NULL,
    revoked_at_ms BIGINT
);

CREATE INDEX IF NOT EXISTS console_api_tokens_account ON console_api_tokens (account_id);
