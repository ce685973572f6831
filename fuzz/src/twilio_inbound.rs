//! The Twilio Media Streams inbound codec: any text frame parses to a value or an error, never a
//! panic; a media payload decodes into a buffer of exactly the size it announces.
use kav::voice::twilio::{
    Inbound, decode_payload, decoded_payload_len, parse_inbound, parse_outbound,
};

/// One fuzz input.
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_outbound(text);
    let Ok(msg) = parse_inbound(text) else {
        return;
    };
    if let Inbound::Media(media) = msg {
        let mut buf = [0u8; 4096];
        if let Some(len) = decoded_payload_len(&media.payload) {
            if let Ok(n) = decode_payload(&media.payload, &mut buf) {
                assert!(n <= len, "decoded {n} bytes, announced {len}");
            }
        } else {
            let _ = decode_payload(&media.payload, &mut buf);
        }
    }
}
