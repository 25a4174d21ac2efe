#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    autoglm_cli::io::fuzz_check_input(data);
});
