//! Every `unsafe` of the consumer lives in this module tree: thin wrappers over the operating
//! system calls the sources need. Each wrapper checks what it hands the OS and returns errors;
//! everything that interprets bytes (fanotify event records, driver messages) is safe code
//! elsewhere, working on the byte buffers these wrappers fill.
#![allow(unsafe_code)]

#[cfg(target_os = "linux")]
pub mod linux;

/// The Windows port client: on Windows over the system DLLs, elsewhere over the simulated ones
/// that `fsense-fltsim` defines (so the same code runs in the test suite).
pub mod windows;

#[cfg(windows)]
pub mod service;
