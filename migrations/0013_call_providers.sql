-- Ops view (issue 12 item 4): which providers served a call ("stt/agent/tts" names, e.g.
-- "google/booking/google"), so latency percentiles can be split per provider. NULL for calls
-- recorded before this migration. Portable on SQLite and PostgreSQL.
ALTER TABLE calls ADD COLUMN providers TEXT;
