//! Writes a model with random weights (normal, std 0.02, seeded) in the Hugging Face
//! layout for a `config.json`: the speed benchmarks' model without PyTorch.
//!
//! `cargo run --release -p autoglm-models --example random_model -- CONFIG.json OUT_DIR [SEED]`

use std::path::PathBuf;

use autoglm_models::{init_weights, save_pretrained, ModelConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(config), Some(out)) = (args.next(), args.next()) else {
        return Err("usage: random_model CONFIG.json OUT_DIR [SEED]".into());
    };
    let seed = args.next().map_or(Ok(0), |s| s.parse())?;
    let cfg = ModelConfig::from_file(&PathBuf::from(&config))?;
    let weights = init_weights(&cfg, 0.02, seed)?;
    let n: usize = weights.values().map(|t| t.len()).sum();
    save_pretrained(&PathBuf::from(&out), &cfg, &weights)?;
    println!("{out}: {:.2} M parameters", n as f64 / 1e6);
    Ok(())
}
