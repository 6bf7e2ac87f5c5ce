#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = lookout::fuzz::http_request(data);
});
