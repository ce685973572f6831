-- Staff assistant tools (issue 13): one audit record per batch call, and the pending
-- confirmations of large batches. Portable SQL as in 0001/0002 (TEXT ids chosen by Kav, BIGINT
-- unix ms, INTEGER 0/1 booleans, no foreign keys); runs on SQLite and PostgreSQL.

-- One row per staff batch tool call, refused or not: who (account, business), which tool, its
-- arguments, the items it touched with each item's result, the outcome and when.
-- outcome: 'done' (every item ok) | 'partial' (some items failed) | 'failed' (no item ok) |
-- 'confirmation_required' (nothing changed, a token was issued) | 'refused' (bad input, a bad
-- or used token: nothing changed).
CREATE TABLE IF NOT EXISTS staff_audit (
    id            TEXT    NOT NULL PRIMARY KEY,
    business_id   TEXT    NOT NULL,
    account_id    TEXT    NOT NULL,
    tool          TEXT    NOT NULL,
    args_json     TEXT    NOT NULL,
    items_json    TEXT    NOT NULL,
    outcome       TEXT    NOT NULL,
    succeeded     BIGINT  NOT NULL,
    failed        BIGINT  NOT NULL,
    error         TEXT,
    reason        TEXT,
    at_ms         BIGINT  NOT NULL
);

CREATE INDEX IF NOT EXISTS staff_audit_business ON staff_audit (business_id, at_ms);

-- A confirmation token for one large batch: only its SHA-256 is stored. It is bound to the
-- account, the business, the tool and `binding` (a digest of the arguments and the items they
-- selected), expires at expires_at_ms and is spent once (used_at_ms set).
CREATE TABLE IF NOT EXISTS staff_confirmations (
    token_hash    TEXT    NOT NULL PRIMARY KEY,
    business_id   TEXT    NOT NULL,
    account_id    TEXT    NOT NULL,
    tool          TEXT    NOT NULL,
    binding       TEXT    NOT NULL,
    items         BIGINT  NOT NULL,
    created_at_ms BIGINT  NOT NULL,
    expires_at_ms BIGINT  NOT NULL,
    used_at_ms    BIGINT
);
