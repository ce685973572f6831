//! Persistence through sqlx: SQLite embedded by default, PostgreSQL with the same migrations.
//! OWNER: store helper. Writes happen off the audio path through a bounded channel.
