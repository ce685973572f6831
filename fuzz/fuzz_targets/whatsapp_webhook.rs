#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| kav_fuzz::whatsapp_webhook::run(data));
