//! Entry points for the fuzz target `fuzz/fuzz_targets/serve_requests.rs`: request
//! parsing must return errors, never panic.

use crate::http::admin::RegisterBody;
use crate::http::llama::LlamaBody;
use crate::http::openai::CompletionBody;
use crate::http::parse_body;
use crate::http::rest::InferBody;
use crate::policy::PolicyConfig;

/// Parses `data` as every request body the API reads and, as text, as a policy's
/// short form; every failure must be a 400 error with a message.
pub fn check_request(data: &[u8]) {
    let errs = [
        parse_body::<RegisterBody>(data).err(),
        parse_body::<InferBody>(data).err(),
        parse_body::<CompletionBody>(data).err(),
        parse_body::<LlamaBody>(data).err(),
    ];
    for e in errs.into_iter().flatten() {
        assert_eq!(e.status(), 400);
        assert!(!e.to_string().is_empty());
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(p) = PolicyConfig::parse(text) {
            assert!(p.check().is_ok());
            // The serde form reads back to the same policy.
            let json = serde_json::to_string(&p).expect("a policy serialises");
            let back: PolicyConfig = serde_json::from_str(&json).expect("and parses back");
            assert_eq!(back, p);
        }
    }
}
