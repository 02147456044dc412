//! fsense, the user-mode consumer: everything the kernel must not do happens here.
//!
//! Sources (the Windows driver's port, Linux fanotify, the Filter Manager simulator, capture
//! files) all deliver fsense-proto messages; [`pipeline::Pipeline`] decodes them, enriches each
//! event with its process, filters (self-exclusion, `--exclude` globs, content rules) and writes
//! OCSF JSON lines. All `unsafe` code is in [`ffi`]; parsing of anything that crosses a trust
//! boundary (driver messages, fanotify buffers, capture files) is safe, bounds-checked code.
#![deny(unsafe_code)]

pub mod capture;
pub mod cli;
pub mod content;
pub mod enrich;
pub mod fanotify;
pub mod ffi;
pub mod filter;
pub mod json;
pub mod live_content;
pub mod ocsf;
pub mod outfile;
pub mod paths;
pub mod pipeline;
pub mod port_framing;
#[cfg(target_os = "linux")]
pub mod procfs;
pub mod report;
pub mod sink;
pub mod status_line;
pub mod synth;
pub mod time;
pub mod winport;
