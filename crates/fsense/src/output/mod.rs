//! Outputs: where a reported event goes, and what a run says about itself.
//!
//! - [`ocsf`]: the OCSF "File System Activity" JSON object of an event, written by [`json`]'s
//!   escaping writer;
//! - [`outfile`]: `--output`, `--capture` and `--summary-json` files, created private and never
//!   through a planted link; [`report`]: the summary JSON; [`status_line`]: the live stderr line;
//! - [`sink`]: destinations besides the output file (NATS JetStream), each with its spool.

pub mod json;
pub mod ocsf;
pub mod outfile;
pub mod report;
pub mod sink;
pub mod status_line;
