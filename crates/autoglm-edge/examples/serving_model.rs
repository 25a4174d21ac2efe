//! Writes the serving benchmark's model shape (`shared/bench/serving/make_model.py`:
//! GLM, hidden 512, 4 layers, 8/2 heads, MLP 1408, vocab 32,000, untied head,
//! 44.05 M parameters) with random weights (normal, std 0.02, seeded), stored as
//! `STORAGE` (`autoglm quantize`'s format; default q4_0) with the head and embedding
//! as `HEAD` (default one step above), with the recipe's tokenizer: a byte-level
//! BPE trained on the E2E references and meaning representations, padded to 32,000
//! with `<unused_i>` added tokens. Also writes `prompt.txt`: E2E dev references
//! joined, cut to `PROMPT_TOKENS` tokens. No PyTorch needed.
//!
//! `cargo run --release -p autoglm-edge --example serving_model -- OUT_DIR TRAIN.jsonl DEV.jsonl [STORAGE [HEAD [PROMPT_TOKENS]]]`

use std::path::Path;

use autoglm_models::{init_weights, save_pretrained_with, storage_plan, ModelConfig, Storage};
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

/// The serving benchmark's configuration, as transformers writes it.
pub const CONFIG: &str = r#"{
  "architectures": ["GlmForCausalLM"], "model_type": "glm", "attention_bias": true,
  "eos_token_id": 1, "pad_token_id": 0, "head_dim": 64, "hidden_act": "silu",
  "hidden_size": 512, "intermediate_size": 1408, "max_position_embeddings": 2048,
  "num_attention_heads": 8, "num_hidden_layers": 4, "num_key_value_heads": 2,
  "partial_rotary_factor": 0.5, "rms_norm_eps": 1.5625e-7, "rope_theta": 10000.0,
  "tie_word_embeddings": false, "vocab_size": 32000
}"#;

/// The recipe's special tokens: pad = 0 and eos = 1, as in the configuration.
const SPECIAL: [&str; 8] = [
    "<|pad|>",
    "<|endoftext|>",
    "[gMASK]",
    "<sop>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|observation|>",
];

fn jsonl(path: &Path) -> Result<Vec<serde_json::Value>, Box<dyn std::error::Error + Send + Sync>> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| format!("{}:{}: {e}", path.display(), i + 1).into())
        })
        .collect()
}

/// The recipe's tokenizer, trained on `train`'s `ref` and `mr` fields.
pub fn tokenizer(train: &Path) -> Result<Tokenizer, Box<dyn std::error::Error + Send + Sync>> {
    let rows = jsonl(train)?;
    let texts: Vec<String> = rows
        .iter()
        .flat_map(|r| [&r["ref"], &r["mr"]])
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
        .vocab_size(32_000)
        .min_frequency(1)
        .show_progress(false)
        .special_tokens(SPECIAL.iter().map(|s| AddedToken::from(*s, true)).collect())
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build()
        .into();
    let mut tok = Tokenizer::new(BPE::default());
    let byte_level = ByteLevel::default()
        .add_prefix_space(false)
        .trim_offsets(false);
    tok.with_pre_tokenizer(Some(byte_level));
    tok.with_decoder(Some(byte_level));
    tok.with_post_processor(Some(byte_level));
    tok.train(&mut trainer, texts.iter())?;
    let n = tok.get_vocab_size(true);
    let unused: Vec<AddedToken> = (0..32_000usize.saturating_sub(n))
        .map(|i| AddedToken::from(format!("<unused_{i}>"), false))
        .collect();
    tok.add_tokens(&unused);
    Ok(tok)
}

/// Writes the model, its tokenizer and a prompt of `prompt_tokens` tokens to `out`.
pub fn write(
    out: &Path,
    train: &Path,
    dev: &Path,
    storage: Storage,
    head: Option<Storage>,
    prompt_tokens: usize,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let cfg = ModelConfig::from_json(CONFIG, Path::new("serving config"))?;
    let weights = init_weights(&cfg, 0.02, 0)?;
    let head = head.unwrap_or_else(|| storage_plan(storage).storage_of("head.w"));
    save_pretrained_with(out, &cfg, &weights, storage, head)?;
    let tok = tokenizer(train)?;
    tok.save(out.join("tokenizer.json"), false)?;
    let text: Vec<String> = jsonl(dev)?
        .iter()
        .filter_map(|r| r["ref"].as_str().map(str::to_string))
        .collect();
    let ids = tok.encode(text.join(" "), false)?.get_ids().to_vec();
    let prompt = tok.decode(&ids[..prompt_tokens.min(ids.len())], true)?;
    std::fs::write(out.join("prompt.txt"), prompt)?;
    Ok(())
}

#[allow(dead_code)]
fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [out, train, dev, rest @ ..] = &args[..] else {
        return Err(
            "usage: serving_model OUT_DIR TRAIN.jsonl DEV.jsonl [STORAGE [HEAD [PROMPT_TOKENS]]]"
                .into(),
        );
    };
    let storage: Storage = rest.first().map_or("q4_0", String::as_str).parse()?;
    let head = rest.get(1).map(|s| s.parse()).transpose()?;
    let prompt_tokens = rest.get(2).map_or(Ok(384), |s| s.parse())?;
    write(
        Path::new(out),
        Path::new(train),
        Path::new(dev),
        storage,
        head,
        prompt_tokens,
    )?;
    println!("{out}: the serving model's shape as {storage}, tokenizer.json, prompt.txt");
    Ok(())
}
