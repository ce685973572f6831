-- WhatsApp channel (issue 5). Portable SQL like 0001: TEXT ids chosen by Kav, BIGINT unix ms.

-- Durable inbound queue. The webhook handler inserts one row per event (message or status) with
-- ON CONFLICT DO NOTHING on `id` (the dedup key: `msg:<wamid>` / `status:<wamid>:<status>`) and
-- answers 200; workers claim rows, process them and mark them done. Meta retries for 7 days, so
-- done rows are kept (a retry of a done event is still a duplicate).
CREATE TABLE IF NOT EXISTS whatsapp_inbox (
    id               TEXT    NOT NULL PRIMARY KEY,
    provider         TEXT    NOT NULL,          -- meta | twilio
    business_id      TEXT    NOT NULL,
    conversation_id  TEXT    NOT NULL,          -- one conversation is processed by one worker at a time
    payload_json     TEXT    NOT NULL,          -- core::whatsapp::InboundEvent
    state            TEXT    NOT NULL,          -- queued | working | done | failed
    attempts         BIGINT  NOT NULL,
    received_at_ms   BIGINT  NOT NULL,
    claimed_at_ms    BIGINT,
    not_before_ms    BIGINT,                    -- a retried row waits until then (backoff)
    done_at_ms       BIGINT,
    error            TEXT
);

CREATE INDEX IF NOT EXISTS whatsapp_inbox_state ON whatsapp_inbox (state, received_at_ms);

-- One row per (business, customer). The customer key is the phone (E.164 digits) when known, so
-- phone calls and WhatsApp meet on the same customer, else the BSUID.
CREATE TABLE IF NOT EXISTS whatsapp_conversations (
    id               TEXT    NOT NULL PRIMARY KEY,
    business_id      TEXT    NOT NULL,
    customer_key     TEXT    NOT NULL,
    customer_phone   TEXT,
    customer_user_id TEXT,
    profile_name     TEXT,
    channel          TEXT    NOT NULL,          -- whatsapp | test (operator endpoint)
    created_at_ms    BIGINT  NOT NULL,
    last_at_ms       BIGINT  NOT NULL
);

CREATE UNIQUE INDEX IF NOT EXISTS whatsapp_conversations_customer
    ON whatsapp_conversations (business_id, customer_key);

-- Conversation history (the last N feed the agent). `reply_to` is set on assistant messages and
-- is unique, so a reprocessed inbound message never gets a second reply.
CREATE TABLE IF NOT EXISTS whatsapp_messages (
    id                  TEXT    NOT NULL PRIMARY KEY,
    conversation_id     TEXT    NOT NULL,
    business_id         TEXT    NOT NULL,
    customer_key        TEXT    NOT NULL,
    role                TEXT    NOT NULL,       -- user | assistant
    text                TEXT    NOT NULL,
    at_ms               BIGINT  NOT NULL,
    provider_message_id TEXT,                   -- inbound wamid / MessageSid
    reply_to            TEXT
);

CREATE INDEX IF NOT EXISTS whatsapp_messages_conversation ON whatsapp_messages (conversation_id, at_ms);
CREATE UNIQUE INDEX IF NOT EXISTS whatsapp_messages_reply_to ON whatsapp_messages (reply_to);

-- Our outbound messages. `id` is the idempotency key (`<inbound id>:<part>`); a row is inserted
-- `pending` before sending and only a pending row is sent.
CREATE TABLE IF NOT EXISTS whatsapp_outbound (
    id                  TEXT    NOT NULL PRIMARY KEY,
    conversation_id     TEXT    NOT NULL,
    business_id         TEXT    NOT NULL,
    recipient           TEXT    NOT NULL,
    body_json           TEXT    NOT NULL,       -- providers::OutboundBody
    provider_message_id TEXT,
    status              TEXT    NOT NULL,       -- pending | accepted | sent | delivered | read | played | failed
    error_code          BIGINT,
    error_detail        TEXT,
    created_at_ms       BIGINT  NOT NULL,
    updated_at_ms       BIGINT  NOT NULL
);

CREATE INDEX IF NOT EXISTS whatsapp_outbound_provider_id ON whatsapp_outbound (provider_message_id);

-- Every distinct status webhook, for audit (dedup on message + status).
CREATE TABLE IF NOT EXISTS whatsapp_status_history (
    provider_message_id TEXT    NOT NULL,
    status              TEXT    NOT NULL,
    at_ms               BIGINT  NOT NULL,
    error_code          BIGINT,
    PRIMARY KEY (provider_message_id, status)
);
