//! The WhatsApp channel: webhook model and parsing, inbox and workers, senders, voice notes.

pub mod graph;
pub mod inbox;
pub mod model;
pub mod voice_note;
