//! fsense, the user-mode consumer: everything the kernel must not do happens here.
//!
//! The tree reads as the pipeline an event goes through:
//!
//! - [`source`]: where events come from (the Windows driver's port, Linux fanotify, capture files,
//!   the Filter Manager simulator's synthetic batches); each delivers fsense-proto messages.
//! - [`pipeline`]: [`pipeline::Pipeline`] decodes them, enriches each event with its process and
//!   path ([`pipeline::enrich`], [`pipeline::paths`]), filters (self-exclusion, `--exclude` globs,
//!   [`pipeline::filter`]) and matches content rules ([`pipeline::content`],
//!   [`pipeline::live_content`]).
//! - [`output`]: OCSF JSON lines ([`output::ocsf`]), the files they go to, the summary and status
//!   line, and sinks such as NATS JetStream ([`output::sink`]).
//! - [`cli`]: the commands that wire a source, the pipeline and the outputs together.
//!
//! All `unsafe` code is in [`ffi`], split by platform and concern; parsing of anything that
//! crosses a trust boundary (driver messages, fanotify buffers, capture files) is safe,
//! bounds-checked code.
#![deny(unsafe_code)]

pub mod cli;
pub mod ffi;
pub mod fleet;
pub mod output;
pub mod pipeline;
pub mod source;
pub mod time;
