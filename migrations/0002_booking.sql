-- Kav booking (issue 4). Portable SQL as in 0001: TEXT ids chosen by Kav, BIGINT unix ms,
-- INTEGER 0/1 booleans, no foreign keys, `ON CONFLICT DO NOTHING` for idempotent seeds.

-- A business (tenant). Booking policy lives in columns so admins can edit it with plain SQL.
-- opening_hours_json: {"sun":["10:00","22:00"], ...} in the business's timezone; a missing
-- weekday is closed. concurrency_scope: 'resource' (limit per room) or 'business' (limit overall).
CREATE TABLE IF NOT EXISTS businesses (
    id                           TEXT    NOT NULL PRIMARY KEY,
    name                         TEXT    NOT NULL,
    timezone                     TEXT    NOT NULL,
    language                     TEXT    NOT NULL,
    prompt_default               TEXT    NOT NULL,
    prompt_phone                 TEXT,
    prompt_whatsapp              TEXT,
    opening_hours_json           TEXT    NOT NULL,
    allow_24_7                   INTEGER NOT NULL,
    slot_size_min                BIGINT  NOT NULL,
    min_notice_min               BIGINT  NOT NULL,
    booking_window_days          BIGINT  NOT NULL,
    require_phone_before_booking INTEGER NOT NULL,
    concurrency_scope            TEXT    NOT NULL,
    concurrency_limit            BIGINT  NOT NULL,
    trace_log_pii                INTEGER NOT NULL,
    updated_at_ms                BIGINT  NOT NULL
);

-- How a business is reached: channel 'phone' + Twilio number (E.164), or channel 'whatsapp' +
-- Cloud API phone_number_id. One business may have several.
CREATE TABLE IF NOT EXISTS business_numbers (
    channel     TEXT NOT NULL,
    address     TEXT NOT NULL,
    business_id TEXT NOT NULL,
    PRIMARY KEY (channel, address)
);

-- What `business_info` answers from: kind is hours | prices | rooms | faq | other.
CREATE TABLE IF NOT EXISTS business_documents (
    id          TEXT NOT NULL PRIMARY KEY,
    business_id TEXT NOT NULL,
    kind        TEXT NOT NULL,
    title       TEXT NOT NULL,
    body        TEXT NOT NULL
);

CREATE INDEX IF NOT EXISTS business_documents_business ON business_documents (business_id);

-- Bookable resources (rooms). aliases: '|'-separated other names (Hebrew spellings).
-- concurrency_limit applies when the business's scope is 'resource'.
CREATE TABLE IF NOT EXISTS resources (
    id                TEXT    NOT NULL PRIMARY KEY,
    business_id       TEXT    NOT NULL,
    name              TEXT    NOT NULL,
    aliases           TEXT    NOT NULL,
    concurrency_limit BIGINT  NOT NULL,
    active            INTEGER NOT NULL
);

CREATE INDEX IF NOT EXISTS resources_business ON resources (business_id);

-- One customer (lead) per business and phone, whatever channel they came through.
CREATE TABLE IF NOT EXISTS customers (
    id            TEXT   NOT NULL PRIMARY KEY,
    business_id   TEXT   NOT NULL,
    phone         TEXT   NOT NULL,
    name          TEXT,
    status        TEXT   NOT NULL,
    first_channel TEXT   NOT NULL,
    last_channel  TEXT   NOT NULL,
    notes         TEXT,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    UNIQUE (business_id, phone)
);

-- status: 'booked' | 'cancelled'. request_key identifies "the same request" for de-duplication.
CREATE TABLE IF NOT EXISTS appointments (
    id              TEXT   NOT NULL PRIMARY KEY,
    business_id     TEXT   NOT NULL,
    resource_id     TEXT,
    customer_id     TEXT,
    customer_name   TEXT   NOT NULL,
    customer_phone  TEXT,
    start_ms        BIGINT NOT NULL,
    end_ms          BIGINT NOT NULL,
    status          TEXT   NOT NULL,
    channel         TEXT   NOT NULL,
    conversation_id TEXT   NOT NULL,
    request_key     TEXT   NOT NULL,
    created_at_ms   BIGINT NOT NULL,
    updated_at_ms   BIGINT NOT NULL
);

CREATE INDEX IF NOT EXISTS appointments_time ON appointments (business_id, start_ms);
CREATE INDEX IF NOT EXISTS appointments_request ON appointments (request_key, created_at_ms);
CREATE INDEX IF NOT EXISTS appointments_phone ON appointments (business_id, customer_phone);

-- The agent's view of a conversation (phone call or WhatsApp thread), for summaries.
CREATE TABLE IF NOT EXISTS conversation_messages (
    id              TEXT   NOT NULL PRIMARY KEY,
    business_id     TEXT   NOT NULL,
    customer_id     TEXT,
    channel         TEXT   NOT NULL,
    conversation_id TEXT   NOT NULL,
    role            TEXT   NOT NULL,
    text            TEXT   NOT NULL,
    at_ms           BIGINT NOT NULL
);

CREATE INDEX IF NOT EXISTS conversation_messages_conv ON conversation_messages (conversation_id, at_ms);

-- Written by the call.ended flow; one per conversation.
CREATE TABLE IF NOT EXISTS conversation_summaries (
    conversation_id TEXT   NOT NULL PRIMARY KEY,
    business_id     TEXT   NOT NULL,
    channel         TEXT   NOT NULL,
    summary         TEXT   NOT NULL,
    at_ms           BIGINT NOT NULL
);

-- Every tool call. args_json has PII masked (phones hashed, names redacted) unless the business
-- sets trace_log_pii.
CREATE TABLE IF NOT EXISTS tool_traces (
    id              TEXT    NOT NULL PRIMARY KEY,
    business_id     TEXT    NOT NULL,
    conversation_id TEXT    NOT NULL,
    channel         TEXT    NOT NULL,
    turn            BIGINT  NOT NULL,
    tool            TEXT    NOT NULL,
    args_json       TEXT    NOT NULL,
    ok              INTEGER NOT NULL,
    error           TEXT,
    reason          TEXT,
    latency_ms      BIGINT  NOT NULL,
    at_ms           BIGINT  NOT NULL
);

CREATE INDEX IF NOT EXISTS tool_traces_conv ON tool_traces (conversation_id, at_ms);

-- Durable outbox: events written in the transaction that caused them, delivered by a worker
-- at least once. status: 'pending' | 'delivered' | 'dead'. idempotency_key is unique so the
-- same logical event is enqueued once; it is also handed to the sender.
CREATE TABLE IF NOT EXISTS outbox (
    id                  TEXT   NOT NULL PRIMARY KEY,
    business_id         TEXT   NOT NULL,
    kind                TEXT   NOT NULL,
    payload_json        TEXT   NOT NULL,
    idempotency_key     TEXT   NOT NULL UNIQUE,
    status              TEXT   NOT NULL,
    attempts            BIGINT NOT NULL,
    next_attempt_at_ms  BIGINT NOT NULL,
    locked_until_ms     BIGINT NOT NULL,
    last_error          TEXT,
    result              TEXT,
    created_at_ms       BIGINT NOT NULL,
    done_at_ms          BIGINT
);

CREATE INDEX IF NOT EXISTS outbox_due ON outbox (status, next_attempt_at_ms);

-- Sample business for the demo: an escape-room venue in Tel Aviv with three rooms.
INSERT INTO businesses (id, name, timezone, language, prompt_default, prompt_phone, prompt_whatsapp,
    opening_hours_json, allow_24_7, slot_size_min, min_notice_min, booking_window_days,
    require_phone_before_booking, concurrency_scope, concurrency_limit, trace_log_pii, updated_at_ms)
VALUES ('biz_escape_tlv', 'Escape TLV', 'Asia/Jerusalem', 'he',
    'אתה הנציג של Escape TLV, מתחם חדרי בריחה בתל אביב עם שלושה חדרים: דובאי, ניו יורק וברצלונה. ענה בעברית, בחום ובקצרה.',
    'בטלפון: משפטים קצרים, שאלה אחת בכל פעם.',
    NULL,
    '{"sun":["10:00","22:00"],"mon":["10:00","22:00"],"tue":["10:00","22:00"],"wed":["10:00","22:00"],"thu":["10:00","23:00"],"fri":["09:00","15:00"],"sat":["19:00","23:00"]}',
    0, 60, 60, 30, 1, 'resource', 1, 0, 0)
ON CONFLICT DO NOTHING;

INSERT INTO business_numbers (channel, address, business_id) VALUES
    ('phone', '+97235550100', 'biz_escape_tlv'),
    ('whatsapp', '100200300400500', 'biz_escape_tlv')
ON CONFLICT DO NOTHING;

INSERT INTO resources (id, business_id, name, aliases, concurrency_limit, active) VALUES
    ('room_dubai', 'biz_escape_tlv', 'Dubai', 'דובאי|dubai', 1, 1),
    ('room_new_york', 'biz_escape_tlv', 'New York', 'ניו יורק|ניו-יורק|new york|newyork', 1, 1),
    ('room_barcelona', 'biz_escape_tlv', 'Barcelona', 'ברצלונה|barcelona', 1, 1)
ON CONFLICT DO NOTHING;

INSERT INTO business_documents (id, business_id, kind, title, body) VALUES
    ('doc_tlv_hours', 'biz_escape_tlv', 'hours', 'Opening hours / שעות פתיחה',
     'Sun-Wed 10:00-22:00, Thu 10:00-23:00, Fri 09:00-15:00, Sat 19:00-23:00. ראשון-רביעי 10:00-22:00, חמישי 10:00-23:00, שישי 09:00-15:00, שבת 19:00-23:00.'),
    ('doc_tlv_prices', 'biz_escape_tlv', 'prices', 'Prices / מחירים',
     'Per room, 60 minutes: 2 players 300 ILS, 3-4 players 400 ILS, 5-6 players 480 ILS. לחדר, 60 דקות: 2 שחקנים 300 ש"ח, 3-4 שחקנים 400 ש"ח, 5-6 שחקנים 480 ש"ח.'),
    ('doc_tlv_rooms', 'biz_escape_tlv', 'rooms', 'Rooms / חדרים',
     'Dubai (heist, 2-6 players), New York (detective, 2-5 players), Barcelona (family friendly, 2-6 players). דובאי (שוד, 2-6 שחקנים), ניו יורק (בלשי, 2-5), ברצלונה (משפחתי, 2-6).'),
    ('doc_tlv_faq', 'biz_escape_tlv', 'faq', 'FAQ / שאלות נפוצות',
     'Parking: free parking behind the building. Arrive 15 minutes early. Children under 12 with an adult. חניה: חניה חינם מאחורי הבניין. להגיע 15 דקות לפני. ילדים מתחת לגיל 12 בליווי מבוגר.')
ON CONFLICT DO NOTHING;
