//! The `fsense content ...` commands without the rest of `fsense`:
//! `cargo run -p fsense-content --example content -- keygen --out-dir keys` etc.

use clap::Parser;

#[derive(Parser)]
#[command(name = "content")]
struct Cli {
    #[command(subcommand)]
    command: fsense_content::cli::ContentCommand,
}

fn main() -> std::process::ExitCode {
    fsense_content::cli::run(Cli::parse().command)
}
