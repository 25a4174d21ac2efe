#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    autoglm_graph::fuzz::check_rules_and_graph(data);
});
