//! The `fsense` command. Everything lives in the library (`fsense::cli`).
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    fsense::cli::main()
}
