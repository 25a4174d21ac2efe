#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    autoglm_serve::fuzz::check_request(data);
});
