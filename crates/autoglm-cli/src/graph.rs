//! `autoglm graph …`: tensor-graph tools.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use autoglm_graph::{builtin_rules, DType, Rule};
use autoglm_ops::{verify_rule, Registry, VerifyOptions};
use clap::{Args, Subcommand, ValueEnum};

/// `autoglm graph`.
#[derive(Debug, Args)]
pub struct GraphArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: GraphCmd,
}

/// The graph subcommands.
#[derive(Debug, Subcommand)]
pub enum GraphCmd {
    /// Verify rewrite rules by execution: each rule's left side is instantiated with
    /// inputs of shapes where it fires, run before and after the rewrite on random
    /// inputs, and compared. Exits non-zero if any rule fails.
    VerifyRules(VerifyArgs),
}

/// Element types to verify in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Dt {
    /// f32.
    F32,
    /// f16.
    F16,
    /// bfloat16.
    Bf16,
}

/// `autoglm graph verify-rules`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A rule file: one `name: lhs => rhs [if guard…]` per line, `#` comments.
    #[arg(required_unless_present = "builtin")]
    pub file: Option<PathBuf>,
    /// Verify the built-in rules (also, if a file is given).
    #[arg(long)]
    pub builtin: bool,
    /// Element types to check in (repeatable).
    #[arg(long = "dtype", value_enum, default_values_t = [Dt::F32])]
    pub dtypes: Vec<Dt>,
    /// Instantiations per rule and type.
    #[arg(long, default_value_t = 3)]
    pub instances: usize,
    /// Random inputs per instantiation.
    #[arg(long, default_value_t = 3)]
    pub trials: usize,
    /// Seed of the random inputs.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// One JSON object per rule and type instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `autoglm graph …`.
///
/// # Errors
/// An unreadable or malformed rule file (naming the file and line), or rules that fail
/// verification or cannot be instantiated (all listed).
pub fn run(args: GraphArgs, out: &mut dyn Write) -> Result<()> {
    match args.command {
        GraphCmd::VerifyRules(a) => verify(a, out),
    }
}

fn verify(a: VerifyArgs, out: &mut dyn Write) -> Result<()> {
    let mut rules = Vec::new();
    if a.builtin {
        rules.extend(builtin_rules());
    }
    if let Some(path) = &a.file {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        rules.extend(Rule::parse_set(&text).with_context(|| format!("{}", path.display()))?);
    }
    let opts = VerifyOptions {
        dtypes: a
            .dtypes
            .iter()
            .map(|d| match d {
                Dt::F32 => DType::F32,
                Dt::F16 => DType::F16,
                Dt::Bf16 => DType::BF16,
            })
            .collect(),
        instances: a.instances,
        trials: a.trials,
        seed: a.seed,
        ..VerifyOptions::default()
    };
    let reg = Registry::with_cpu_kernels();
    let mut failed = Vec::new();
    for rule in &rules {
        match verify_rule(rule, &reg, &opts) {
            Ok(checks) => {
                for c in checks {
                    if a.json {
                        writeln!(
                            out,
                            "{}",
                            serde_json::json!({
                                "rule": c.rule, "dtype": c.dtype.to_string(), "passed": c.passed,
                                "instances": c.instances, "max_abs_err": c.max_abs_err,
                                "max_rel_err": c.max_rel_err, "example": c.example,
                            })
                        )?;
                    } else {
                        writeln!(
                            out,
                            "{} {:28} {:4} {} instances, max |Δ| {:.2e} (relative {:.2e}); e.g. {}",
                            if c.passed { "ok  " } else { "FAIL" },
                            c.rule,
                            c.dtype,
                            c.instances,
                            c.max_abs_err,
                            c.max_rel_err,
                            c.example
                        )?;
                    }
                    if !c.passed {
                        failed.push(format!(
                            "{} ({}): max |Δ| {:.2e}, relative {:.2e} on {}",
                            c.rule, c.dtype, c.max_abs_err, c.max_rel_err, c.example
                        ));
                    }
                }
            }
            Err(e) => {
                if a.json {
                    writeln!(
                        out,
                        "{}",
                        serde_json::json!({"rule": rule.name, "passed": false, "error": e.to_string()})
                    )?;
                } else {
                    writeln!(out, "FAIL {:28} {e}", rule.name)?;
                }
                failed.push(e.to_string());
            }
        }
    }
    out.flush()?;
    if !failed.is_empty() {
        bail!(
            "{} of {} rules failed verification:\n{}",
            failed.len(),
            rules.len(),
            failed.join("\n")
        );
    }
    Ok(())
}
