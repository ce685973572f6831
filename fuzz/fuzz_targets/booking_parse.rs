#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| kav_fuzz::booking_parse::run(data));
