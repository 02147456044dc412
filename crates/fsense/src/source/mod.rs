//! Sources: everything that delivers fsense-proto messages to the pipeline.
//!
//! - [`winport`]: the Windows driver's communication port (the real client, also run against the
//!   simulated fltlib), with [`port_framing`] splitting what a receive returns;
//! - [`fanotify`]: Linux fanotify, so the whole pipeline runs against a real kernel;
//! - [`capture`]: capture files, written beside a run and replayed later;
//! - [`synth`]: synthetic driver messages built with the real encoder (tests, benches, fuzz seeds).

pub mod capture;
pub mod fanotify;
pub mod port_framing;
pub mod synth;
pub mod winport;
