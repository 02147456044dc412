//! OCSF "File System Activity" (class 1001) events, one JSON object per line. The mapping is
//! documented field by field in `docs/ocsf.md`; everything a record holds that OCSF has no field
//! for is kept under `unmapped`.

use std::fmt;
use std::io::{self, Write};

use fsense_proto::{EventRecord, Operation, RecordFlags};
use serde::Serialize;
use serde::ser::{SerializeSeq, Serializer};

use crate::enrich::ProcessInfo;
use crate::time::ticks_to_unix_ms;

/// The OCSF schema version the events follow.
pub const OCSF_SCHEMA_VERSION: &str = "1.3.0";
pub const CLASS_UID: u32 = 1001;
pub const CATEGORY_UID: u32 = 1;
pub const ACTIVITY_CREATE: u32 = 1;
pub const ACTIVITY_UPDATE: u32 = 3;

/// A rule that matched the event, as it appears in the output.
#[derive(Debug, Clone, Serialize)]
pub struct MatchedRule {
    pub id: String,
    pub severity: &'static str,
}

/// Everything the output needs about one event, after enrichment and filtering.
pub struct EventView<'a> {
    pub record: &'a EventRecord<'a>,
    /// The path to show: drive-letter form when known, U+FFFD for what is not text.
    pub path: &'a str,
    /// The path as the record holds it, when `path` differs from it.
    pub raw_path: Option<&'a str>,
    /// Whether `path` holds the record's units exactly.
    pub path_exact: bool,
    pub parent_folder: &'a str,
    pub name: &'a str,
    pub process: Option<&'a ProcessInfo>,
    pub rules: &'a [MatchedRule],
    /// OCSF severity id: the highest of the matched rules, else 1 (informational).
    pub severity_id: u8,
}

#[derive(Serialize)]
struct OcsfEvent<'a> {
    class_uid: u32,
    class_name: &'static str,
    category_uid: u32,
    category_name: &'static str,
    activity_id: u32,
    activity_name: &'static str,
    type_uid: u32,
    time: i64,
    severity_id: u8,
    severity: &'static str,
    status_id: u8,
    status: &'static str,
    status_code: Hex32,
    file: File<'a>,
    actor: Actor<'a>,
    metadata: Metadata,
    unmapped: Unmapped<'a>,
}

#[derive(Serialize)]
struct File<'a> {
    path: &'a str,
    name: &'a str,
    parent_folder: &'a str,
    /// OCSF file type: 1 regular file, 2 folder, 0 unknown.
    type_id: u8,
}

#[derive(Serialize)]
struct Actor<'a> {
    process: Process<'a>,
}

#[derive(Serialize)]
struct Process<'a> {
    pid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<User<'a>>,
}

#[derive(Serialize)]
struct User<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<&'a str>,
}

#[derive(Serialize)]
struct Metadata {
    product: Product,
    version: &'static str,
}

#[derive(Serialize)]
struct Product {
    name: &'static str,
    vendor_name: &'static str,
    version: &'static str,
}

#[derive(Serialize)]
struct Unmapped<'a> {
    sequence: u64,
    operation: &'static str,
    flags: Hex16,
    flag_names: FlagNames,
    status: Hex32,
    tid: u32,
    process_create_time: u64,
    volume: VolumeText<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    raw_path: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path_units: Option<Units<'a>>,
    #[serde(flatten)]
    op: OpFields,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    rules: &'a [MatchedRule],
}

#[derive(Serialize)]
#[serde(untagged)]
enum OpFields {
    Create {
        disposition: u32,
        options: Hex32,
        access: Hex32,
        share: Hex32,
        information: u64,
    },
    Write {
        offset: u64,
        length: u32,
        information: u64,
    },
}

/// A u32 written as `"0x%08X"` without allocating.
struct Hex32(u32);
impl Serialize for Hex32 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{:#010X}", self.0))
    }
}

struct Hex16(u16);
impl Serialize for Hex16 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{:#06X}", self.0))
    }
}

struct FlagNames(RecordFlags);
impl Serialize for FlagNames {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        const NAMES: [(RecordFlags, &str); 6] = [
            (RecordFlags::PATH_TRUNCATED, "path_truncated"),
            (RecordFlags::NAME_QUERY_FAILED, "name_query_failed"),
            (RecordFlags::PAGING_IO, "paging_io"),
            (RecordFlags::NAME_FROM_CONTEXT, "name_from_context"),
            (RecordFlags::DIRECTORY, "directory"),
            (RecordFlags::KERNEL_REQUESTOR, "kernel_requestor"),
        ];
        let mut seq = s.serialize_seq(None)?;
        for (flag, name) in NAMES {
            if self.0.contains(flag) {
                seq.serialize_element(name)?;
            }
        }
        seq.end()
    }
}

/// The exact UTF-16 units of a path that is not valid UTF-16.
struct Units<'a>(fsense_proto::Utf16Path<'a>);
impl Serialize for Units<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter_units())
    }
}

/// The volume name, lossily decoded (it is informational; the path carries the identity).
struct VolumeText<'a>(fsense_proto::Utf16Path<'a>);
impl Serialize for VolumeText<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&DisplayUtf16(self.0))
    }
}

struct DisplayUtf16<'a>(fsense_proto::Utf16Path<'a>);
impl fmt::Display for DisplayUtf16<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write as _;
        for c in self.0.chars() {
            f.write_char(c.unwrap_or(char::REPLACEMENT_CHARACTER))?;
        }
        Ok(())
    }
}

/// OCSF severity name of a severity id.
pub fn severity_name(id: u8) -> &'static str {
    match id {
        1 => "Informational",
        2 => "Low",
        3 => "Medium",
        4 => "High",
        5 => "Critical",
        6 => "Fatal",
        _ => "Unknown",
    }
}

/// `NT_SUCCESS`: success, informational and warning codes are not failures.
pub fn nt_success(status: u32) -> bool {
    (status as i32) >= 0
}

/// Writes one event as a JSON line.
pub fn write_event(out: &mut impl Write, ev: &EventView<'_>) -> io::Result<()> {
    let r = ev.record;
    let (activity_id, activity_name) = match r.operation {
        Operation::Create => (ACTIVITY_CREATE, "Create"),
        Operation::Write => (ACTIVITY_UPDATE, "Update"),
    };
    let ok = nt_success(r.status);
    let op = match r.operation {
        Operation::Create => OpFields::Create {
            disposition: r.create_disposition,
            options: Hex32(r.create_options),
            access: Hex32(r.desired_access),
            share: Hex32(r.share_access),
            information: r.information,
        },
        Operation::Write => OpFields::Write {
            offset: r.write_offset,
            length: r.write_length,
            information: r.information,
        },
    };
    let user = ev.process.and_then(|p| {
        (p.user.is_some() || p.uid.is_some()).then_some(User {
            name: p.user.as_deref(),
            uid: p.uid.as_deref(),
        })
    });
    let event = OcsfEvent {
        class_uid: CLASS_UID,
        class_name: "File System Activity",
        category_uid: CATEGORY_UID,
        category_name: "System Activity",
        activity_id,
        activity_name,
        type_uid: CLASS_UID * 100 + activity_id,
        time: ticks_to_unix_ms(r.timestamp),
        severity_id: ev.severity_id,
        severity: severity_name(ev.severity_id),
        status_id: if ok { 1 } else { 2 },
        status: if ok { "Success" } else { "Failure" },
        status_code: Hex32(r.status),
        file: File {
            path: ev.path,
            name: ev.name,
            parent_folder: ev.parent_folder,
            type_id: if r.flags.contains(RecordFlags::DIRECTORY) {
                2
            } else {
                1
            },
        },
        actor: Actor {
            process: Process {
                pid: r.pid,
                name: ev.process.map(|p| p.name.as_str()),
                created_time: (r.process_create_time != 0)
                    .then(|| ticks_to_unix_ms(r.process_create_time)),
                user,
            },
        },
        metadata: Metadata {
            product: Product {
                name: "fsense",
                vendor_name: "fsense",
                version: env!("CARGO_PKG_VERSION"),
            },
            version: OCSF_SCHEMA_VERSION,
        },
        unmapped: Unmapped {
            sequence: r.sequence,
            operation: r.operation.as_str(),
            flags: Hex16(r.flags.bits()),
            flag_names: FlagNames(r.flags),
            status: Hex32(r.status),
            tid: r.tid,
            process_create_time: r.process_create_time,
            volume: VolumeText(r.volume),
            raw_path: ev.raw_path,
            path_units: (!ev.path_exact).then_some(Units(r.path)),
            op,
            rules: ev.rules,
        },
    };
    serde_json::to_writer(&mut *out, &event).map_err(io::Error::other)?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use fsense_proto::Utf16Path;
    use serde_json::Value;

    fn render(rec: &EventRecord<'_>, path: &str, exact: bool, rules: &[MatchedRule]) -> Value {
        let process = ProcessInfo {
            name: "word.exe".into(),
            user: Some("CORP\\ann".into()),
            uid: Some("S-1-5-21-1".into()),
        };
        let (parent, name) = crate::paths::split(path);
        let view = EventView {
            record: rec,
            path,
            raw_path: None,
            path_exact: exact,
            parent_folder: parent,
            name,
            process: Some(&process),
            rules,
            severity_id: if rules.is_empty() { 1 } else { 4 },
        };
        let mut out = Vec::new();
        write_event(&mut out, &view).unwrap();
        assert_eq!(out.last(), Some(&b'\n'));
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn create_maps_to_ocsf_file_system_activity() {
        let mut rec = EventRecord::create(Utf16Path::EMPTY, Utf16Path::EMPTY);
        rec.sequence = 42;
        rec.pid = 7;
        rec.timestamp = crate::time::UNIX_EPOCH_TICKS + 5 * TICKS;
        rec.status = 0xC000_0034;
        rec.create_disposition = 2;
        rec.desired_access = 0x0012_0089;
        let v = render(&rec, "C:\\Users\\ann\\a.docm", true, &[]);
        assert_eq!(v["class_uid"], 1001);
        assert_eq!(v["category_uid"], 1);
        assert_eq!(v["activity_id"], 1);
        assert_eq!(v["type_uid"], 100101);
        assert_eq!(v["time"], 5);
        assert_eq!(v["severity_id"], 1);
        assert_eq!(v["status_id"], 2);
        assert_eq!(v["status_code"], "0xC0000034");
        assert_eq!(v["file"]["path"], "C:\\Users\\ann\\a.docm");
        assert_eq!(v["file"]["name"], "a.docm");
        assert_eq!(v["file"]["parent_folder"], "C:\\Users\\ann");
        assert_eq!(v["actor"]["process"]["pid"], 7);
        assert_eq!(v["actor"]["process"]["name"], "word.exe");
        assert_eq!(v["actor"]["process"]["user"]["name"], "CORP\\ann");
        assert_eq!(v["metadata"]["product"]["name"], "fsense");
        assert_eq!(v["metadata"]["version"], OCSF_SCHEMA_VERSION);
        assert_eq!(v["unmapped"]["sequence"], 42);
        assert_eq!(v["unmapped"]["access"], "0x00120089");
        assert_eq!(v["unmapped"]["disposition"], 2);
        assert!(v["unmapped"].get("offset").is_none());
        assert!(v["unmapped"].get("path_units").is_none());
    }

    const TICKS: u64 = crate::time::TICKS_PER_MS;

    #[test]
    fn write_with_rules_and_inexact_path_keeps_the_units() {
        let units: Vec<u8> = [0x2F, 0x61, 0xD800]
            .iter()
            .flat_map(|u: &u16| u.to_le_bytes())
            .collect();
        let mut rec =
            EventRecord::write(Utf16Path::from_le_bytes(&units).unwrap(), Utf16Path::EMPTY);
        rec.write_offset = u64::MAX;
        rec.write_length = 4096;
        let rules = [MatchedRule {
            id: "mass-write".into(),
            severity: "high",
        }];
        let v = render(&rec, "/a\u{FFFD}", false, &rules);
        assert_eq!(v["activity_id"], 3);
        assert_eq!(v["type_uid"], 100103);
        assert_eq!(v["severity_id"], 4);
        assert_eq!(v["status_id"], 1);
        assert_eq!(v["unmapped"]["offset"], u64::MAX);
        assert_eq!(v["unmapped"]["length"], 4096);
        assert_eq!(
            v["unmapped"]["path_units"],
            serde_json::json!([0x2F, 0x61, 0xD800])
        );
        assert_eq!(v["unmapped"]["rules"][0]["id"], "mass-write");
        assert!(v["unmapped"].get("access").is_none());
    }
}
