//! The `fsense` command. Everything lives in the library (`fsense::cli`).
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    // rustls is linked with two crypto providers and panics where none was chosen: choose one
    // for the whole process before anything can open a TLS connection (review N1).
    #[cfg(all(feature = "nats", not(target_env = "msvc")))]
    {
        fsense::output::sink::install_crypto_provider();
        // The NATS publisher is restarted after a panic; a panic anywhere else aborts, as before.
        fsense::output::sink::nats_guard::install_panic_hook(true);
    }
    fsense::cli::main()
}
