-- Staff assistant (issue 13): the console's staff chat and the per-business staff prompt.
-- Portable SQL as in 0009 (TEXT ids chosen by Kav, BIGINT unix ms); SQLite and PostgreSQL.
--
-- One row per message of a business's staff chat, in order (at_ms, seq). role: 'user' (a staff
-- member; account_email says who), 'assistant' (the reply; mode 'llm' or 'offline'), 'tool' (one
-- tool call: tool_name, arguments_json, the result JSON in text, call_id pairing it with the
-- model's call). Customer channels never write or read this table.
CREATE TABLE IF NOT EXISTS staff_chat_messages (
    id             TEXT    NOT NULL PRIMARY KEY,
    business_id    TEXT    NOT NULL,
    seq            BIGINT  NOT NULL,
    account_email  TEXT    NOT NULL,
    role           TEXT    NOT NULL,
    text           TEXT    NOT NULL,
    tool_name      TEXT,
    arguments_json TEXT,
    call_id        TEXT,
    mode           TEXT,
    at_ms          BIGINT  NOT NULL
);

CREATE INDEX IF NOT EXISTS staff_chat_messages_business ON staff_chat_messages (business_id, at_ms, seq);

-- A business's own staff-assistant prompt, replacing `[staff_agent] prompt` for it.
CREATE TABLE IF NOT EXISTS staff_agent_prompts (
    business_id   TEXT   NOT NULL PRIMARY KEY,
    prompt        TEXT   NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    updated_by    TEXT   NOT NULL
);
