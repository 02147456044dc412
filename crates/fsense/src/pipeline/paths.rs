//! Turning the UTF-16 paths of records into text people and SIEMs can read, without losing data.
//!
//! A record's path is whatever units the file system handed over: NTFS names may hold unpaired
//! surrogates, and Linux names are bytes that need not be UTF-8. The display form is lossy
//! (U+FFFD for what is not text); whenever it is, the exact units are kept next to it.
//!
//! Linux names enter records with the "surrogate escape" convention: every byte that is not part
//! of valid UTF-8 becomes the lone surrogate `0xDC00 + byte`, so the original bytes can always be
//! recovered from the units ([`linux_bytes_from_units`]).

use std::borrow::Cow;

use fsense_proto::Utf16Path;

/// The readable form of a record path and whether it is exact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayPath {
    pub text: String,
    /// False when an unpaired surrogate was replaced by U+FFFD.
    pub exact: bool,
}

/// Decodes UTF-16LE units, replacing unpaired surrogates.
pub fn display(path: &Utf16Path<'_>) -> DisplayPath {
    let bytes = path.as_le_bytes();
    // Fast path: most paths are ASCII.
    if bytes.chunks_exact(2).all(|u| u[1] == 0 && u[0] < 0x80) {
        let text: String = bytes.chunks_exact(2).map(|u| char::from(u[0])).collect();
        return DisplayPath { text, exact: true };
    }
    let mut text = String::with_capacity(path.units());
    let mut exact = true;
    for c in path.chars() {
        match c {
            Ok(c) => text.push(c),
            Err(_) => {
                exact = false;
                text.push(char::REPLACEMENT_CHARACTER);
            }
        }
    }
    DisplayPath { text, exact }
}

/// Encodes Linux path bytes as UTF-16LE bytes, escaping bytes that are not UTF-8 as lone
/// surrogates `0xDC00 + byte`.
pub fn linux_bytes_to_utf16le(bytes: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let mut push = |u: u16| out.extend_from_slice(&u.to_le_bytes());
    for chunk in bytes.utf8_chunks() {
        for unit in chunk.valid().encode_utf16() {
            push(unit);
        }
        for &b in chunk.invalid() {
            push(0xDC00 | u16::from(b));
        }
    }
}

/// Inverse of [`linux_bytes_to_utf16le`]: the original bytes, or `None` if the units are not of
/// that form (e.g. a lone surrogate outside `0xDC80..=0xDCFF`).
pub fn linux_bytes_from_units(path: &Utf16Path<'_>) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(path.units());
    let mut buf = [0u8; 4];
    for c in path.chars() {
        match c {
            Ok(c) => out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes()),
            Err(u @ 0xDC80..=0xDCFF) => out.push((u & 0xFF) as u8),
            Err(_) => return None,
        }
    }
    Some(out)
}

/// Splits a path into (parent folder, name). Paths that start with `/` are POSIX paths (a
/// backslash is an ordinary character in a Linux name); everything else uses `\`.
pub fn split(path: &str) -> (&str, &str) {
    let sep = if path.starts_with('/') { '/' } else { '\\' };
    match path.rfind(sep) {
        Some(0) => (&path[..1], &path[1..]),
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("", path),
    }
}

/// NT device names to drive letters (`\Device\HarddiskVolume3` -> `C:`), as `QueryDosDevice`
/// reports them. Empty where there are no such devices (Linux, replays elsewhere).
#[derive(Debug, Clone, Default)]
pub struct DosDeviceMap {
    /// (device name, drive), longest device names first so that `...Volume10` wins over `...Volume1`.
    entries: Vec<(String, String)>,
}

impl DosDeviceMap {
    pub fn new(mut entries: Vec<(String, String)>) -> Self {
        entries.sort_by_key(|e| std::cmp::Reverse(e.0.len()));
        Self { entries }
    }

    /// The map of the machine this runs on.
    pub fn current() -> Self {
        #[cfg(windows)]
        {
            Self::new(crate::ffi::windows::dos_devices())
        }
        #[cfg(not(windows))]
        {
            Self::default()
        }
    }

    /// `path` with its device prefix replaced by a drive letter, or unchanged. Device names
    /// compare case-insensitively and must be followed by `\` or the end of the path.
    pub fn to_dos<'p>(&self, path: &'p str) -> Cow<'p, str> {
        for (device, drive) in &self.entries {
            let Some(head) = path.get(..device.len()) else {
                continue;
            };
            if !head.eq_ignore_ascii_case(device) {
                continue;
            }
            let rest = &path[device.len()..];
            if rest.is_empty() || rest.starts_with('\\') {
                let mut mapped = String::with_capacity(drive.len() + rest.len());
                mapped.push_str(drive);
                mapped.push_str(rest);
                return Cow::Owned(mapped);
            }
        }
        Cow::Borrowed(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn utf16(units: &[u16]) -> Vec<u8> {
        units.iter().flat_map(|u| u.to_le_bytes()).collect()
    }

    #[test]
    fn unpaired_surrogate_is_replaced_and_flagged() {
        let bytes = utf16(&[0x61, 0xD800, 0x62]);
        let p = Utf16Path::from_le_bytes(&bytes).unwrap();
        assert_eq!(
            display(&p),
            DisplayPath {
                text: "a\u{FFFD}b".into(),
                exact: false
            }
        );
    }

    #[test]
    fn split_handles_both_conventions() {
        assert_eq!(split("/tmp/a b"), ("/tmp", "a b"));
        assert_eq!(split("/x"), ("/", "x"));
        assert_eq!(split("/tmp/back\\slash"), ("/tmp", "back\\slash"));
        assert_eq!(split("C:\\Users\\a.txt"), ("C:\\Users", "a.txt"));
        assert_eq!(split("name"), ("", "name"));
    }

    #[test]
    fn device_prefix_maps_only_on_a_component_boundary() {
        let map = DosDeviceMap::new(vec![
            ("\\Device\\HarddiskVolume1".into(), "C:".into()),
            ("\\Device\\HarddiskVolume10".into(), "D:".into()),
        ]);
        assert_eq!(map.to_dos("\\Device\\HarddiskVolume1\\a"), "C:\\a");
        assert_eq!(map.to_dos("\\device\\harddiskvolume10\\b"), "D:\\b");
        assert_eq!(
            map.to_dos("\\Device\\HarddiskVolume11\\c"),
            "\\Device\\HarddiskVolume11\\c"
        );
        assert_eq!(map.to_dos("\\Device\\HarddiskVolume1"), "C:");
    }

    proptest! {
        #[test]
        fn linux_bytes_survive_the_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut le = Vec::new();
            linux_bytes_to_utf16le(&bytes, &mut le);
            let p = Utf16Path::from_le_bytes(&le).unwrap();
            prop_assert_eq!(linux_bytes_from_units(&p), Some(bytes.clone()));
            let shown = display(&p);
            prop_assert_eq!(shown.exact, std::str::from_utf8(&bytes).is_ok());
        }
    }
}
