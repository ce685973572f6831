//! The WhatsApp Cloud API webhook body: any bytes give events or an error, never a panic; every
//! event has a dedup key.
use kav::channels::whatsapp::model::{parse_graph_error, parse_webhook};

/// One fuzz input.
pub fn run(data: &[u8]) {
    if let Ok(events) = parse_webhook(data) {
        for event in &events {
            assert!(!event.dedup_key().is_empty());
            let _ = event.phone_number_id();
        }
    }
    let _ = parse_graph_error(data);
}
