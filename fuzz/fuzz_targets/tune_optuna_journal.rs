#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    autoglm_tune::fuzz::check_optuna_journal(data);
});
