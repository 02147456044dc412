//! fsense minifilter: a minimal kernel sensor.
//!
//! It registers pre/post CREATE and WRITE callbacks, records who opened or wrote which file (never
//! file content), and forwards the records in batches over a Filter Manager communication port to
//! the user-mode consumer. It interprets no content and never waits on user mode: the I/O
//! callbacks only copy a record into a pre-allocated queue, and a worker thread delivers batches
//! with bounded timeouts, counting every event it could not deliver.
//!
//! Layout:
//! - [`ffi`]: the only `unsafe` code: kernel declarations, entry points and callbacks, and safe
//!   wrappers that check every pointer and length before reading (see its docs for the choices:
//!   no user memory dereferenced, which volumes we attach to, where write names come from);
//! - [`sensor`]: what gets recorded, self-exclusion, the queue, health and config;
//! - [`delivery`]: the worker that sends batches and health.
//!
//! On the host (tests, `fsense simulate`) the same code runs against `fsense-fltsim`, which
//! defines the kernel and Filter Manager functions declared here.
#![no_std]
// `unsafe` is allowed in exactly two places: the FFI layer and the link-time panic check.
#![deny(unsafe_code)]

pub mod delivery;
#[allow(unsafe_code)]
pub mod ffi;
#[allow(unsafe_code)]
mod panic;
pub mod sensor;
