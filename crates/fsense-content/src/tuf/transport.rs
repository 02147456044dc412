//! Where a repository is and how its files are read: local directories (a blocking, no-follow
//! transport) and web servers ([`crate::http`]); loading through `tough` verifies everything.

use std::path::{Path, PathBuf};

use fsense_safefs::SafeFsError;
use tough::{
    ExpirationEnforcement, Repository, RepositoryLoader, Transport, TransportError,
    TransportErrorKind, TransportStream,
};
use url::Url;

use super::common::{metadata_dir, targets_dir};
use crate::{ContentError, ErrorKind};

fn dir_url(dir: &Path) -> Result<Url, ContentError> {
    let absolute =
        std::path::absolute(dir).map_err(|e| ContentError::io("cannot resolve", dir, e))?;
    Url::from_directory_path(&absolute).map_err(|()| {
        ContentError::failed(format!("{} cannot be a file:// URL", absolute.display()))
    })
}

/// Largest file the transport reads; `tough` applies its own, lower limits per role on top.
const MAX_FETCH_BYTES: u64 = 16 * 1024 * 1024;

/// A `file://` transport that reads each file with one blocking read. `tough`'s own file transport
/// goes through tokio's blocking pool chunk by chunk; on a loaded machine those thread hand-offs
/// made a 1000-host simulation take a minute. Verification is unchanged: `tough` checks what
/// this returns exactly as it checks what comes over HTTP.
///
/// The URLs tough asks for are joined onto our own base URLs; they are mapped back to paths with
/// `to_file_path` (so `sp ace` and non-ASCII directory names work) and must stay below one of the
/// bases. Each file is opened without following a final symbolic link and must be a regular file:
/// a FIFO or device in the repository is refused, never waited on.
#[derive(Debug, Clone)]
struct LocalFiles {
    bases: Vec<PathBuf>,
}

impl LocalFiles {
    fn path_of(&self, url: &Url) -> Option<PathBuf> {
        if url.scheme() != "file" {
            return None;
        }
        let path = url.to_file_path().ok()?;
        let inside = self.bases.iter().any(|base| {
            path.strip_prefix(base).is_ok_and(|rest| {
                rest.components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)))
            })
        });
        inside.then_some(path)
    }
}

#[tough::async_trait]
impl Transport for LocalFiles {
    async fn fetch(&self, url: Url) -> Result<TransportStream, TransportError> {
        use std::io::Read;
        let Some(path) = self.path_of(&url) else {
            return Err(TransportError::new(
                TransportErrorKind::UnsupportedUrlScheme,
                url,
            ));
        };
        let read = match fsense_safefs::open_regular(&path) {
            Ok(file) => {
                let mut bytes = Vec::new();
                file.take(MAX_FETCH_BYTES + 1)
                    .read_to_end(&mut bytes)
                    .map(|_| bytes)
            }
            Err(SafeFsError::Io { source, .. }) => Err(source),
            Err(refused) => {
                return Err(TransportError::new_with_cause(
                    TransportErrorKind::Other,
                    url,
                    refused.to_string(),
                ));
            }
        };
        let bytes = match read {
            Ok(bytes) if bytes.len() as u64 > MAX_FETCH_BYTES => {
                return Err(TransportError::new_with_cause(
                    TransportErrorKind::Other,
                    url,
                    format!("over {MAX_FETCH_BYTES} bytes"),
                ));
            }
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(TransportError::new_with_cause(
                    TransportErrorKind::FileNotFound,
                    url,
                    e,
                ));
            }
            Err(e) => {
                return Err(TransportError::new_with_cause(
                    TransportErrorKind::Other,
                    url,
                    e,
                ));
            }
        };
        Ok(Box::pin(futures::stream::iter(std::iter::once(Ok(
            tough::Bytes::from(bytes),
        )))))
    }
}

/// Where a repository is: a local directory, or (fleet) an `http://` / `https://` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RepoLocation {
    Dir(PathBuf),
    Http {
        /// The repository's base URL (holding `metadata/` and `targets/`).
        base: Url,
        settings: crate::http::HttpSettings,
    },
}

impl RepoLocation {
    /// Parses a `--repo` argument: an `http(s)://` URL, or else a directory.
    pub fn parse(arg: &std::ffi::OsStr, settings: &crate::http::HttpSettings) -> Self {
        match arg.to_str() {
            Some(text) if crate::http::is_http_url(text) => {
                let with_slash = if text.ends_with('/') {
                    text.to_owned()
                } else {
                    format!("{text}/")
                };
                match Url::parse(&with_slash) {
                    Ok(base) => Self::Http {
                        base,
                        settings: settings.clone(),
                    },
                    Err(_) => Self::Dir(PathBuf::from(arg)),
                }
            }
            _ => Self::Dir(PathBuf::from(arg)),
        }
    }
}

impl std::fmt::Display for RepoLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Dir(path) => write!(f, "{}", path.display()),
            Self::Http { base, .. } => write!(f, "{base}"),
        }
    }
}

/// Loads and verifies a repository through TUF: signatures and thresholds, expiries, hashes and
/// lengths, and (against what `datastore` remembers, if given) rollback of metadata versions.
pub(crate) async fn load_repository(
    repo: &Path,
    trusted_root: &[u8],
    datastore: Option<&Path>,
) -> Result<Repository, ContentError> {
    load_with(repo, trusted_root, datastore, ExpirationEnforcement::Safe).await
}

pub(crate) async fn load_with(
    repo: &Path,
    trusted_root: &[u8],
    datastore: Option<&Path>,
    expiry: ExpirationEnforcement,
) -> Result<Repository, ContentError> {
    load_at(
        &RepoLocation::Dir(repo.to_owned()),
        trusted_root,
        datastore,
        expiry,
    )
    .await
}

/// [`load_repository`] for any repository location.
pub(crate) async fn load_repository_at(
    repo: &RepoLocation,
    trusted_root: &[u8],
    datastore: Option<&Path>,
) -> Result<Repository, ContentError> {
    load_at(repo, trusted_root, datastore, ExpirationEnforcement::Safe).await
}

async fn load_at(
    repo: &RepoLocation,
    trusted_root: &[u8],
    datastore: Option<&Path>,
    expiry: ExpirationEnforcement,
) -> Result<Repository, ContentError> {
    let mut loader = match repo {
        RepoLocation::Dir(dir) => {
            let (metadata, targets) = (metadata_dir(dir), targets_dir(dir));
            let bases = [&metadata, &targets]
                .into_iter()
                .map(|d| {
                    std::path::absolute(d).map_err(|e| ContentError::io("cannot resolve", d, e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            RepositoryLoader::new(&trusted_root, dir_url(&metadata)?, dir_url(&targets)?)
                .transport(LocalFiles { bases })
        }
        RepoLocation::Http { base, settings } => {
            let join = |path: &str| {
                base.join(path)
                    .map_err(|e| ContentError::failed(format!("{base} cannot hold {path}: {e}")))
            };
            RepositoryLoader::new(&trusted_root, join("metadata/")?, join("targets/")?)
                .transport(crate::http::HttpFiles::new(settings)?)
        }
    }
    .expiration_enforcement(expiry);
    if let Some(datastore) = datastore {
        loader = loader.datastore(datastore);
    }
    loader
        .load()
        .await
        .map_err(|e| ContentError::tuf(ErrorKind::Refused, "TUF verification failed", &e))
}
