//! The `autoglm` binary: see the `autoglm_cli` library for its behaviour.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = autoglm_cli::Cli::parse();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match autoglm_cli::run(cli, &mut out) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            drop(out);
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
