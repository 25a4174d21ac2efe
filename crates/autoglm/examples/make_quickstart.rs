//! Writes the bundled quickstart data set (`examples/data/quickstart/`).
//!
//! `cargo run -p autoglm --example make_quickstart -- [DIR]`

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "examples/data/quickstart".into());
    autoglm::quickstart::write_corpus(std::path::Path::new(&dir), 2000, 100, 100, 2026)?;
    println!("wrote {dir}/train.jsonl, dev.jsonl, test.jsonl");
    Ok(())
}
