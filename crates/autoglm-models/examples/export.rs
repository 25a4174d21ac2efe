//! Loads a checkpoint's weights and writes them back in the Hugging Face layout
//! (`save_pretrained`): `cargo run -p autoglm-models --example export -- SRC DST`.

use std::path::PathBuf;

use autoglm_models::{load_weights, save_pretrained, Checkpoint, ModelConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1).map(PathBuf::from);
    let (Some(src), Some(dst)) = (args.next(), args.next()) else {
        return Err("usage: export SRC DST".into());
    };
    let cfg = ModelConfig::from_file(&src.join("config.json"))?;
    let weights = load_weights(&cfg, &Checkpoint::open(&src)?)?;
    save_pretrained(&dst, &cfg, &weights)?;
    println!("wrote {}", dst.display());
    Ok(())
}
