-- Conversation state in the database (issue 15): any instance can take any message of any
-- conversation. One row per (conversation, kind): `offline_dialog` (the offline booking dialog's
-- state) and `tool_memory` (the LLM agent's recent tool calls). `state_json` is a JSON blob whose
-- format is `version`; a row of another version is ignored (the conversation starts that state
-- afresh). Loaded at the start of a turn and saved at its end, under the WhatsApp inbox's
-- per-conversation claim (a call's turns are one at a time by construction). Portable on SQLite
-- and PostgreSQL.
CREATE TABLE IF NOT EXISTS conversation_state (
    conversation_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    version INTEGER NOT NULL,
    state_json TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, kind)
);
