//! `fsense-pkgcheck`: checks the driver package built by `cargo make package` (see the library docs).
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use fsense_pkgcheck::{checksum, code, floor, image, inf, package, scripts};

#[derive(Parser)]
#[command(
    version,
    about = "Checks the fsense driver package: image, INF, Windows scripts"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a driver image (PE32+, machine, NATIVE, entry, imports, checksum, flags, signature;
    /// and in the code, on AMD64 and ARM64: data imports as their C types give, stack per entry
    /// point).
    Image {
        file: PathBuf,
        /// The image must carry an Authenticode signature.
        #[arg(long)]
        require_signature: bool,
        /// The processor the image is for.
        #[arg(long, value_enum, default_value_t = Arch::Amd64)]
        arch: Arch,
    },
    /// Print what the code checks read in a driver image: data imports, stack per entry point,
    /// largest frame (exit 1 when they find something).
    Report { file: PathBuf },
    /// Write the correct PE checksum into an unsigned image (signing rewrites it anyway).
    FixChecksum { file: PathBuf },
    /// Lint an INF against the minifilter rules (and the declared minimum Windows).
    Inf { file: PathBuf },
    /// Check the PowerShell kit against the INF and the package file names.
    Scripts {
        dir: PathBuf,
        #[arg(long)]
        inf: PathBuf,
    },
    /// Check a whole package directory (fsense.sys signed, fsense.inf, fsense.cer, fsense.exe).
    Package {
        dir: PathBuf,
        /// Also check the Windows scripts in this directory against the package's INF.
        #[arg(long)]
        scripts: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Arch {
    Amd64,
    Arm64,
}

impl From<Arch> for image::Architecture {
    fn from(arch: Arch) -> Self {
        match arch {
            Arch::Amd64 => Self::Amd64,
            Arch::Arm64 => Self::Arm64,
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|error| format!("cannot read {}: {error}", path.display()))
}

/// Prints each finding; Ok(true) when there were none.
fn report<T: std::fmt::Display>(subject: &Path, findings: &[T]) -> bool {
    for finding in findings {
        println!("{}: {finding}", subject.display());
    }
    if findings.is_empty() {
        println!("{}: ok", subject.display());
    }
    findings.is_empty()
}

fn run(cli: Cli) -> Result<bool, String> {
    match cli.command {
        Command::Image {
            file,
            require_signature,
            arch,
        } => {
            let data = read(&file)?;
            let rules = image::ImageRules {
                require_signature,
                floor: fsense_pkgcheck::imports::DECLARED_FLOOR,
            };
            let findings = image::check_architecture(&data, rules, arch.into())
                .map_err(|error| format!("{}: {error}", file.display()))?;
            Ok(report(&file, &findings))
        }
        Command::Report { file } => {
            let data = read(&file)?;
            let analysis =
                code::analyze(&data).map_err(|error| format!("{}: {error}", file.display()))?;
            print!("{analysis}");
            Ok(analysis.findings.is_empty())
        }
        Command::FixChecksum { file } => {
            let mut data = read(&file)?;
            if image::has_signature(&data) {
                return Err(format!(
                    "{}: image is signed; fix the checksum before signing (signing writes its own)",
                    file.display()
                ));
            }
            let (old, new) =
                checksum::fix(&mut data).map_err(|error| format!("{}: {error}", file.display()))?;
            std::fs::write(&file, &data)
                .map_err(|error| format!("cannot write {}: {error}", file.display()))?;
            println!("{}: checksum {old:#010x} -> {new:#010x}", file.display());
            Ok(true)
        }
        Command::Inf { file } => {
            let text = inf::read_inf(&file).map_err(|error| error.to_string())?;
            let mut findings: Vec<String> = inf::lint(&text)
                .map_err(|error| format!("{}: {error}", file.display()))?
                .into_iter()
                .map(|finding| finding.to_string())
                .collect();
            // The header's minimum Windows must be the declared one.
            findings.extend(
                floor::check_text("", &text, true)
                    .into_iter()
                    .map(|finding| finding.message),
            );
            Ok(report(&file, &findings))
        }
        Command::Scripts { dir, inf } => {
            let text = inf::read_inf(&inf).map_err(|error| error.to_string())?;
            let findings = scripts::check_dir(&dir, &text).map_err(|error| error.to_string())?;
            Ok(report(&dir, &findings))
        }
        Command::Package { dir, scripts } => {
            let findings =
                package::check(&dir, scripts.as_deref()).map_err(|error| error.to_string())?;
            Ok(report(&dir, &findings))
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}
