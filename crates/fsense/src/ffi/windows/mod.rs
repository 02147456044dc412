//! Win32 calls of the consumer over windows-sys, one file per concern: the Filter Manager port
//! client ([`port`]), process and device queries ([`process`]), access lists ([`acl`]), and what
//! they share ([`win32`]).
//!
//! On Windows these calls go to the system DLLs. Elsewhere the same code is built against
//! `fsense-fltsim`, which defines every function imported here with the windows-sys signature
//! and wires them to the simulated port the real driver code sends on (`fsense simulate
//! --client win32`), so this code runs in the test suite.

#[cfg(windows)]
pub mod acl;
pub mod port;
pub mod process;
pub mod win32;

#[cfg(windows)]
pub use acl::restrict_to_administrators;
pub use port::{DEFAULT_RECEIVES, Port, Received, is_connection_limit};
pub use process::{WinProcessLookup, dos_devices};
#[cfg(not(windows))]
pub use win32::SimulatedWin32Error;
pub use win32::last_error;
