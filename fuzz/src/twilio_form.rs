//! Twilio WhatsApp webhooks as the server sees them: an `application/x-www-form-urlencoded` body
//! decoded with `form_urlencoded` (as `src/server/whatsapp.rs` does) then parsed as a message or a
//! status callback.
use kav::channels::whatsapp::model::{
    is_twilio_status_callback, parse_twilio_form, parse_twilio_status, strip_whatsapp_address,
};

/// One fuzz input.
pub fn run(data: &[u8]) {
    let params: Vec<(String, String)> = form_urlencoded::parse(data).into_owned().collect();
    if is_twilio_status_callback(&params) {
        let _ = parse_twilio_status(&params);
    }
    let _ = parse_twilio_form(&params);
    for (_, v) in &params {
        let _ = strip_whatsapp_address(v);
    }
}
