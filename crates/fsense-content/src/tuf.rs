//! Content distribution through a TUF repository, with `tough` on both sides.
//!
//! Layout (a directory here; the same tree behind an HTTP server in a fleet):
//! ```text
//! KEYS/root.json               signed root metadata: the trust anchor sensors ship with
//! KEYS/{root,targets,snapshot,timestamp}.pk8   Ed25519 private keys (PKCS#8 DER), mode 0600
//! REPO/metadata/N.root.json    root metadata, by version
//! REPO/metadata/N.targets.json targets (consistent snapshots: versioned names)
//! REPO/metadata/N.snapshot.json
//! REPO/metadata/timestamp.json the only file overwritten by a release, written last
//! REPO/targets/<sha256>.rules-<V>.toml   each release's rules file, content-addressed
//! ```
//! Each release is a target `rules-<V>.toml` whose custom metadata carries `rules_version = V`;
//! older releases stay listed so that a fleet can compare with, or return to, the previous one.
//!
//! The parts, each below the next: `common` (names, lifetimes, the runtime), `transport`
//! (repository locations and loading), `verify` (reading a release back), `keygen` and `publish`.
//! This file only gathers them; none of them imports it.

mod common;
mod keygen;
mod publish;
mod transport;
mod verify;

pub use common::{
    Lifetimes, MAX_TARGETS_KEYS, MetadataVersions, ROOT_FILE, VERSION_KEY, shared_targets_key_file,
    target_name,
};
pub(crate) use common::{
    ROLES, ROOT_DAYS, block_on, days_from_now, key_file, metadata_dir, targets_dir, tuf_failed,
};
pub use keygen::{TargetsKeys, keygen, keygen_with};
pub use publish::{Published, publish, publish_with};
pub(crate) use publish::{lock_repository, move_files_in, repository_exists};
pub use transport::RepoLocation;
pub(crate) use transport::{load_repository, load_repository_at, load_with};
pub use verify::{Fetched, verify, verify_at};
pub(crate) use verify::{fetch_release, releases};
