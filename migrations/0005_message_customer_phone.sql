-- One customer across channels (issue 5): conversation messages carry the customer's phone
-- (E.164) when the channel knows it, so a WhatsApp conversation can see the same customer's
-- recent phone-call turns. Portable on SQLite and PostgreSQL.
ALTER TABLE conversation_messages ADD COLUMN customer_phone TEXT;
CREATE INDEX IF NOT EXISTS conversation_messages_customer
    ON conversation_messages (business_id, customer_phone, at_ms);
