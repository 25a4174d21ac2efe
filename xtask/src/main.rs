//! Repository automation: `cargo xtask deps | fuzz-check | tidy | gpu-check`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace root")
        .to_owned()
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

/// The normal (non-dev) dependency names of a workspace package.
fn normal_deps(package: &str) -> Result<Vec<String>> {
    tree(package, false)
}

/// The package's own (direct) normal dependencies.
fn direct_deps(package: &str) -> Result<Vec<String>> {
    tree(package, true)
}

fn tree(package: &str, direct: bool) -> Result<Vec<String>> {
    let mut args = vec![
        "tree", "-p", package, "-e", "normal", "--prefix", "none", "--format", "{p}",
    ];
    if direct {
        args.extend(["--depth", "1"]);
    }
    let out = cargo().args(&args).output().context("running cargo tree")?;
    if !out.status.success() {
        bail!(
            "cargo tree -p {package} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect())
}

fn workspace_crates() -> Result<Vec<String>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(root().join("crates"))? {
        let e = e?;
        if e.path().join("Cargo.toml").exists() {
            v.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    v.sort();
    Ok(v)
}

/// The dependency-direction guard (see ARCHITECTURE.md).
fn deps() -> Result<()> {
    let crates = workspace_crates()?;
    let mut problems = Vec::new();
    for leaf in ["autoglm-eval", "autoglm-tune", "autoglm-sched"] {
        if !crates.iter().any(|c| c == leaf) {
            continue;
        }
        for d in normal_deps(leaf)? {
            if d.starts_with("autoglm") {
                problems.push(format!("{leaf} is a leaf crate but depends on {d}"));
            }
        }
    }
    if crates.iter().any(|c| c == "autoglm-graph") {
        for d in normal_deps("autoglm-graph")? {
            if d == "ndarray" || d.starts_with("cubecl") || d == "autoglm-ops" {
                problems.push(format!("autoglm-graph must not depend on {d}"));
            }
        }
    }
    // Upper layers never reach down-stack crates' consumers: the models crate knows
    // nothing of training or serving, serving nothing of the AutoTrainer.
    let above: [(&str, &[&str]); 5] = [
        (
            "autoglm-ops",
            &[
                "autoglm-models",
                "autoglm-train",
                "autoglm-serve",
                "autoglm",
                "autoglm-cli",
            ],
        ),
        (
            "autoglm-models",
            &["autoglm-train", "autoglm-serve", "autoglm", "autoglm-cli"],
        ),
        (
            "autoglm-train",
            &["autoglm-serve", "autoglm", "autoglm-cli"],
        ),
        (
            "autoglm-serve",
            &["autoglm", "autoglm-train", "autoglm-cli"],
        ),
        ("autoglm", &["autoglm-serve", "autoglm-cli"]),
    ];
    for (c, forbidden) in above {
        if !crates.iter().any(|x| x == c) {
            continue;
        }
        for d in normal_deps(c)? {
            if forbidden.contains(&d.as_str()) {
                problems.push(format!("{c} must not depend on {d}"));
            }
        }
    }
    // The edge runtime is a slim binary: no HTTP, gRPC or async stack, nothing of
    // training or the AutoTrainer.
    if crates.iter().any(|c| c == "autoglm-edge") {
        for d in normal_deps("autoglm-edge")? {
            let heavy = [
                "autoglm-serve",
                "autoglm-train",
                "autoglm",
                "autoglm-cli",
                "tokio",
                "axum",
                "hyper",
                "tonic",
                "reqwest",
            ];
            if heavy.contains(&d.as_str()) {
                problems.push(format!("autoglm-edge must not depend on {d}"));
            }
        }
    }
    for c in &crates {
        // The binaries' crates parse their command lines with clap.
        if c == "autoglm-cli" || c == "autoglm-edge" {
            continue;
        }
        // Direct dependencies only: a proc-macro may use anyhow inside (prost-derive
        // does) without it reaching the library's API.
        for d in direct_deps(c)? {
            if d == "clap" || d == "anyhow" {
                problems.push(format!("library crate {c} depends on {d}"));
            }
        }
    }
    if !problems.is_empty() {
        bail!("dependency direction violated:\n{}", problems.join("\n"));
    }
    println!("dependency direction ok ({} crates)", crates.len());
    Ok(())
}

/// Builds the fuzz targets (they have their own workspace).
fn fuzz_check() -> Result<()> {
    let status = cargo()
        .args(["check", "--manifest-path", "fuzz/Cargo.toml", "--bins"])
        .status()?;
    if !status.success() {
        bail!("fuzz targets do not build");
    }
    Ok(())
}

/// Prepares the GPU check for a lent GPU machine (which has no Rust toolchain and takes
/// at most 64 MiB per call): `gpu_check` built in release with the `wgpu` and `cuda`
/// features, stripped, with `benches/gpu/run.sh` and `roofline.py`, in
/// `target/gpu-check/`. On the machine: `bash target/gpu-check/run.sh` (carrying
/// `target/gpu-check`).
fn gpu_check() -> Result<()> {
    let status = cargo()
        .args([
            "build",
            "--release",
            "--locked",
            "-p",
            "autoglm-ops",
            "--features",
            "wgpu,cuda",
            "--example",
            "gpu_check",
        ])
        .status()?;
    if !status.success() {
        bail!("building gpu_check failed");
    }
    let dir = root().join("target/gpu-check");
    std::fs::create_dir_all(&dir)?;
    let bin = dir.join("gpu_check");
    std::fs::copy(root().join("target/release/examples/gpu_check"), &bin)?;
    let stripped = Command::new("strip").arg(&bin).status();
    if !stripped.is_ok_and(|s| s.success()) {
        println!("warning: `strip` failed; the binary is unstripped");
    }
    for f in ["run.sh", "roofline.py"] {
        std::fs::copy(root().join("benches/gpu").join(f), dir.join(f))?;
    }
    let size: u64 = std::fs::read_dir(&dir)?
        .map(|e| e.and_then(|e| e.metadata()).map(|m| m.len()))
        .sum::<std::io::Result<u64>>()?;
    println!(
        "target/gpu-check ready ({:.1} MiB): carry it and run `bash target/gpu-check/run.sh` on the GPU machine",
        size as f64 / (1 << 20) as f64
    );
    if size > 60 << 20 {
        bail!("target/gpu-check is over 60 MiB; a device call carries at most 64 MiB");
    }
    Ok(())
}

/// Repository hygiene; also run as a test (`cargo test -p xtask`).
fn tidy() -> Result<()> {
    let mut problems = Vec::new();
    for c in workspace_crates()? {
        let dir = root().join("crates").join(&c);
        if !dir.join("README.md").exists() {
            problems.push(format!("crates/{c} has no README.md"));
        }
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml"))?;
        if !manifest.contains("[lints]\nworkspace = true") {
            problems.push(format!(
                "crates/{c}/Cargo.toml does not set lints.workspace = true"
            ));
        }
        for f in rust_files(&dir.join("src"))? {
            let text = std::fs::read_to_string(&f)?;
            for (i, line) in text.lines().enumerate() {
                // Spelled in pieces so that this file does not match itself.
                for bad in [
                    concat!("dbg", "!("),
                    concat!("todo", "!("),
                    concat!("unimplemented", "!("),
                ] {
                    if line.contains(bad) && !line.trim_start().starts_with("//") {
                        problems.push(format!("{}:{}: {bad}", f.display(), i + 1));
                    }
                }
            }
        }
    }
    if !problems.is_empty() {
        bail!("tidy:\n{}", problems.join("\n"));
    }
    Ok(())
}

fn rust_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    if !dir.exists() {
        return Ok(out);
    }
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            out.extend(rust_files(&p)?);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    Ok(out)
}

fn main() -> Result<()> {
    match std::env::args().nth(1).as_deref() {
        Some("deps") => deps(),
        Some("fuzz-check") => fuzz_check(),
        Some("tidy") => tidy(),
        Some("gpu-check") => gpu_check(),
        _ => bail!("usage: cargo xtask deps | fuzz-check | tidy | gpu-check"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tidy() {
        super::tidy().unwrap();
    }
}
