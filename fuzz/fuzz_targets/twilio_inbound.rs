#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| kav_fuzz::twilio_inbound::run(data));
