-- Provider totals per turn (issue 3): TTFB of the agent and TTS are ai_latency_ms and
-- tts_ready_ms; these add the time each took to finish the turn. Portable on SQLite and PostgreSQL.
ALTER TABLE turns ADD COLUMN ai_total_ms BIGINT;
ALTER TABLE turns ADD COLUMN tts_total_ms BIGINT;
