//! OCSF "File System Activity" (class 1001) events, one JSON object per line. The mapping is
//! documented field by field in `docs/ocsf.md`; everything a record holds that OCSF has no field
//! for is kept under `unmapped`.

use fsense_proto::{EventRecord, Operation, RecordFlags};

use crate::output::json::JsonOut;
use crate::pipeline::enrich::ProcessInfo;
use crate::time::ticks_to_unix_ms;

/// The OCSF schema version the events follow.
pub const OCSF_SCHEMA_VERSION: &str = "1.3.0";
pub const CLASS_UID: u32 = 1001;
pub const CATEGORY_UID: u32 = 1;
pub const ACTIVITY_CREATE: u32 = 1;
pub const ACTIVITY_UPDATE: u32 = 3;
pub const ACTIVITY_DELETE: u32 = 4;
pub const ACTIVITY_RENAME: u32 = 5;
/// OCSF 99 `Other`: "see the `activity_name` attribute" (hard links; see `docs/ocsf.md`).
pub const ACTIVITY_OTHER: u32 = 99;

/// A rule that matched the event, as it appears in the output.
#[derive(Debug, Clone)]
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
    /// The record's second name to show (a rename's or link's new name, a clone's source), in
    /// the same form as `path`; `None` when the record has none.
    pub target: Option<&'a str>,
    /// Whether `target` holds the record's target units exactly.
    pub target_exact: bool,
}

/// OCSF activity id and name of a record.
pub fn activity_of(r: &EventRecord<'_>) -> (u32, &'static str) {
    match r.operation {
        // Captures of Linux sources before protocol 4 carry renames as creates so flagged.
        Operation::Create if r.flags.contains(RecordFlags::RENAMED) => (ACTIVITY_RENAME, "Rename"),
        Operation::Create => (ACTIVITY_CREATE, "Create"),
        // An MDL write and a block clone change the file's data as a write does.
        Operation::Write | Operation::Clone => (ACTIVITY_UPDATE, "Update"),
        Operation::Delete => (ACTIVITY_DELETE, "Delete"),
        Operation::Rename => (ACTIVITY_RENAME, "Rename"),
        Operation::Link => (ACTIVITY_OTHER, "Link"),
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

/// `STATUS_REPARSE`: a success code, but the create opened nothing; the I/O manager re-issues it
/// at the name the reparse point gave (a symbolic link or junction was crossed). See
/// `FltCancelFileOpen`, which must not be called for it because no file object was opened
/// (MicrosoftDocs/windows-driver-docs-ddi, `fltkernel/nf-fltkernel-fltcancelfileopen.md`).
pub const STATUS_REPARSE: u32 = 0x0000_0104;

/// OCSF `status_id`, `status` and, when the code needs one, `status_detail` of a record.
fn status_of(r: &EventRecord<'_>) -> (u8, &'static str, Option<&'static str>) {
    if r.operation == Operation::Create && r.status == STATUS_REPARSE {
        // Not a successful create, and not a failure either: OCSF 99 `Other`.
        return (
            99,
            "Other",
            Some(
                "reparse: a link or junction was crossed and the create re-issued at its target; this path was not opened",
            ),
        );
    }
    if nt_success(r.status) {
        (1, "Success", None)
    } else {
        (2, "Failure", None)
    }
}

/// Appends one event as a JSON line to `line`.
pub fn write_event(line: &mut Vec<u8>, ev: &EventView<'_>) {
    let r = ev.record;
    let legacy_rename = r.operation == Operation::Create && r.flags.contains(RecordFlags::RENAMED);
    let (activity_id, activity_name) = activity_of(r);
    let (status_id, status, status_detail) = status_of(r);
    let mut j = JsonOut::new(line);
    j.raw("{\"class_uid\":1001,\"class_name\":\"File System Activity\",\"category_uid\":1,\"category_name\":\"System Activity\",\"activity_id\":")
        .u64(activity_id.into())
        .raw(",\"activity_name\":")
        .str(activity_name)
        .raw(",\"type_uid\":")
        .u64((CLASS_UID * 100 + activity_id).into())
        .raw(",\"time\":")
        .i64(ticks_to_unix_ms(r.timestamp))
        .raw(",\"severity_id\":")
        .u64(ev.severity_id.into())
        .raw(",\"severity\":")
        .str(severity_name(ev.severity_id))
        .raw(",\"status_id\":")
        .u64(status_id.into())
        .raw(",\"status\":")
        .str(status);
    if let Some(detail) = status_detail {
        j.raw(",\"status_detail\":").str(detail);
    }
    j.raw(",\"status_code\":").hex(r.status.into(), 8);
    // file: the entry the activity was on; for a rename its previous name and `file_result`
    // the name it has now; for a link the existing file and `file_result` the new name.
    let type_id = if r.flags.contains(RecordFlags::DIRECTORY) {
        ",\"type_id\":2}"
    } else {
        ",\"type_id\":1}"
    };
    let previous = legacy_rename.then(|| crate::pipeline::paths::display(&r.volume));
    let file_object = |j: &mut JsonOut<'_>, key: &str, path: &str| {
        let (parent_folder, name) = crate::pipeline::paths::split(path);
        j.raw(key)
            .str(path)
            .raw(",\"name\":")
            .str(name)
            .raw(",\"parent_folder\":")
            .str(parent_folder)
            .raw(type_id);
    };
    if let Some(previous) = &previous {
        file_object(&mut j, ",\"file\":{\"path\":", &previous.text);
        j.raw(",\"file_result\":{\"path\":")
            .str(ev.path)
            .raw(",\"name\":")
            .str(ev.name)
            .raw(",\"parent_folder\":")
            .str(ev.parent_folder)
            .raw(type_id);
    } else {
        j.raw(",\"file\":{\"path\":")
            .str(ev.path)
            .raw(",\"name\":")
            .str(ev.name)
            .raw(",\"parent_folder\":")
            .str(ev.parent_folder)
            .raw(type_id);
        if matches!(r.operation, Operation::Rename | Operation::Link)
            && let Some(target) = ev.target
        {
            file_object(&mut j, ",\"file_result\":{\"path\":", target);
        }
    }
    // actor.process
    j.raw(",\"actor\":{\"process\":{\"pid\":").u64(r.pid.into());
    if let Some(p) = ev.process {
        j.raw(",\"name\":").str(&p.name);
    }
    if r.process_create_time != 0 {
        j.raw(",\"created_time\":")
            .i64(ticks_to_unix_ms(r.process_create_time));
    }
    if let Some(p) = ev.process.filter(|p| p.user.is_some() || p.uid.is_some()) {
        j.raw(",\"user\":{");
        let mut sep = "";
        if let Some(name) = &p.user {
            j.raw("\"name\":").str(name);
            sep = ",";
        }
        if let Some(uid) = &p.uid {
            j.raw(sep).raw("\"uid\":").str(uid);
        }
        j.raw("}");
    }
    j.raw("}}");
    // metadata
    j.raw(concat!(
        ",\"metadata\":{\"product\":{\"name\":\"fsense\",\"vendor_name\":\"fsense\",\"version\":\"",
        env!("CARGO_PKG_VERSION"),
        "\"},\"version\":\""
    ))
    .raw(OCSF_SCHEMA_VERSION)
    .raw("\"}");
    // unmapped
    j.raw(",\"unmapped\":{\"sequence\":")
        .u64(r.sequence)
        .raw(",\"operation\":")
        .str(r.operation.as_str())
        .raw(",\"flags\":")
        .hex(r.flags.bits().into(), 4)
        .raw(",\"flag_names\":[");
    let mut sep = "";
    for (flag, name) in FLAG_NAMES {
        if r.flags.contains(flag) {
            j.raw(sep).str(name);
            sep = ",";
        }
    }
    j.raw("],\"status\":")
        .hex(r.status.into(), 8)
        .raw(",\"tid\":")
        .u64(r.tid.into())
        .raw(",\"process_create_time\":")
        .u64(r.process_create_time)
        .raw(",\"volume\":");
    if r.volume.is_empty() || legacy_rename {
        j.raw("\"\"");
    } else {
        j.str(&crate::pipeline::paths::display(&r.volume).text);
    }
    if previous.as_ref().is_some_and(|p| !p.exact) {
        j.raw(",\"previous_path_units\":[");
        for (i, u) in r.volume.iter_units().enumerate() {
            if i > 0 {
                j.raw(",");
            }
            j.u64(u.into());
        }
        j.raw("]");
    }
    if let Some(raw) = ev.raw_path {
        j.raw(",\"raw_path\":").str(raw);
    }
    if r.operation == Operation::Clone
        && let Some(source) = ev.target
    {
        j.raw(",\"source_path\":").str(source);
        if !ev.target_exact {
            units(&mut j, ",\"source_units\":[", &r.target);
        }
    } else if ev.target.is_some() && !ev.target_exact {
        units(&mut j, ",\"target_units\":[", &r.target);
    }
    if !ev.path_exact {
        j.raw(",\"path_units\":[");
        for (i, u) in r.path.iter_units().enumerate() {
            if i > 0 {
                j.raw(",");
            }
            j.u64(u.into());
        }
        j.raw("]");
    }
    match r.operation {
        Operation::Delete | Operation::Rename | Operation::Link => {}
        Operation::Create => {
            j.raw(",\"disposition\":")
                .u64(r.create_disposition.into())
                .raw(",\"options\":")
                .hex(r.create_options.into(), 8)
                .raw(",\"access\":")
                .hex(r.desired_access.into(), 8)
                .raw(",\"share\":")
                .hex(r.share_access.into(), 8);
        }
        Operation::Write | Operation::Clone => {
            j.raw(",\"offset\":")
                .u64(r.write_offset)
                .raw(",\"length\":")
                .u64(r.write_length.into());
        }
    }
    j.raw(",\"information\":").u64(r.information);
    if !ev.rules.is_empty() {
        j.raw(",\"rules\":[");
        for (i, rule) in ev.rules.iter().enumerate() {
            j.raw(if i == 0 { "{\"id\":" } else { ",{\"id\":" })
                .str(&rule.id)
                .raw(",\"severity\":")
                .str(rule.severity)
                .raw("}");
        }
        j.raw("]");
    }
    j.raw("}}\n");
}

/// Appends `key`, the units of `path` as numbers, and the closing `]`.
fn units(j: &mut JsonOut<'_>, key: &str, path: &fsense_proto::Utf16Path<'_>) {
    j.raw(key);
    for (i, u) in path.iter_units().enumerate() {
        if i > 0 {
            j.raw(",");
        }
        j.u64(u.into());
    }
    j.raw("]");
}

const FLAG_NAMES: [(RecordFlags, &str); 14] = [
    (RecordFlags::PATH_TRUNCATED, "path_truncated"),
    (RecordFlags::NAME_QUERY_FAILED, "name_query_failed"),
    (RecordFlags::PAGING_IO, "paging_io"),
    (RecordFlags::NAME_FROM_CONTEXT, "name_from_context"),
    (RecordFlags::DIRECTORY, "directory"),
    (RecordFlags::KERNEL_REQUESTOR, "kernel_requestor"),
    (RecordFlags::NO_NAME_CONTEXT, "no_name_context"),
    (RecordFlags::RENAMED, "renamed"),
    (RecordFlags::PROCESS_EXITED, "process_exited"),
    (RecordFlags::TARGET_TRUNCATED, "target_truncated"),
    (RecordFlags::TARGET_NAME_FAILED, "target_name_failed"),
    (RecordFlags::MDL_WRITE, "mdl_write"),
    (RecordFlags::POSIX_DELETE, "posix_delete"),
    (RecordFlags::REPLACE_EXISTING, "replace_existing"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use fsense_proto::Utf16Path;
    use serde_json::Value;

    fn render(rec: &EventRecord<'_>, path: &str, exact: bool, rules: &[MatchedRule]) -> Value {
        render_with_target(rec, path, exact, rules, None)
    }

    fn render_with_target(
        rec: &EventRecord<'_>,
        path: &str,
        exact: bool,
        rules: &[MatchedRule],
        target: Option<(&str, bool)>,
    ) -> Value {
        let process = ProcessInfo {
            name: "word.exe".into(),
            user: Some("CORP\\ann".into()),
            uid: Some("S-1-5-21-1".into()),
        };
        let (parent, name) = crate::pipeline::paths::split(path);
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
            target: target.map(|t| t.0),
            target_exact: target.is_none_or(|t| t.1),
        };
        let mut out = Vec::new();
        write_event(&mut out, &view);
        assert_eq!(out.last(), Some(&b'\n'));
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn a_rename_maps_to_the_rename_activity_with_both_names() {
        let old: Vec<u8> = "/w/dl.docm.part"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let mut rec =
            EventRecord::create(Utf16Path::EMPTY, Utf16Path::from_le_bytes(&old).unwrap());
        rec.flags = RecordFlags::RENAMED.union(RecordFlags::PROCESS_EXITED);
        let v = render(&rec, "/w/dl.docm", true, &[]);
        assert_eq!(v["activity_id"], 5);
        assert_eq!(v["activity_name"], "Rename");
        assert_eq!(v["type_uid"], 100105);
        assert_eq!(v["file"]["path"], "/w/dl.docm.part");
        assert_eq!(v["file"]["name"], "dl.docm.part");
        assert_eq!(v["file_result"]["path"], "/w/dl.docm");
        assert_eq!(v["file_result"]["name"], "dl.docm");
        assert_eq!(v["file_result"]["parent_folder"], "/w");
        assert_eq!(v["unmapped"]["volume"], "");
        assert_eq!(
            v["unmapped"]["flag_names"],
            serde_json::json!(["renamed", "process_exited"])
        );
    }

    fn utf16(text: &str) -> Vec<u8> {
        text.encode_utf16().flat_map(u16::to_le_bytes).collect()
    }

    #[test]
    fn a_protocol_4_rename_has_the_old_name_as_file_and_the_new_as_file_result() {
        let old = utf16("C:\\d\\report.docx");
        let new = utf16("C:\\d\\report.docx.locked");
        let mut rec = EventRecord::blank(
            Operation::Rename,
            Utf16Path::from_le_bytes(&old).unwrap(),
            Utf16Path::EMPTY,
        );
        rec.target = Utf16Path::from_le_bytes(&new).unwrap();
        rec.flags = RecordFlags::REPLACE_EXISTING;
        let v = render_with_target(
            &rec,
            "C:\\d\\report.docx",
            true,
            &[],
            Some(("C:\\d\\report.docx.locked", true)),
        );
        assert_eq!(v["activity_id"], 5, "{v}");
        assert_eq!(v["activity_name"], "Rename");
        assert_eq!(v["type_uid"], 100105);
        assert_eq!(v["file"]["path"], "C:\\d\\report.docx");
        assert_eq!(v["file_result"]["path"], "C:\\d\\report.docx.locked");
        assert_eq!(v["file_result"]["name"], "report.docx.locked");
        assert_eq!(v["file_result"]["parent_folder"], "C:\\d");
        assert_eq!(v["unmapped"]["operation"], "rename");
        assert_eq!(
            v["unmapped"]["flag_names"],
            serde_json::json!(["replace_existing"])
        );
        assert!(v["unmapped"].get("target_units").is_none());
        assert!(v["unmapped"].get("offset").is_none());
        assert!(v["unmapped"].get("disposition").is_none());
    }

    #[test]
    fn deletes_links_clones_and_mdl_writes_map_to_their_activities() {
        let mut del = EventRecord::blank(Operation::Delete, Utf16Path::EMPTY, Utf16Path::EMPTY);
        del.flags = RecordFlags::POSIX_DELETE.union(RecordFlags::DIRECTORY);
        let v = render(&del, "C:\\d\\gone", true, &[]);
        assert_eq!(
            (v["activity_id"].clone(), v["type_uid"].clone()),
            (4.into(), 100104.into())
        );
        assert_eq!(v["activity_name"], "Delete");
        assert_eq!(v["file"]["type_id"], 2);
        assert!(v.get("file_result").is_none());
        assert_eq!(
            v["unmapped"]["flag_names"],
            serde_json::json!(["directory", "posix_delete"])
        );

        let link = EventRecord::blank(Operation::Link, Utf16Path::EMPTY, Utf16Path::EMPTY);
        let v = render_with_target(&link, "C:\\a", true, &[], Some(("C:\\b", true)));
        assert_eq!(v["activity_id"], 99);
        assert_eq!(v["activity_name"], "Link");
        assert_eq!(v["type_uid"], 100199);
        assert_eq!(v["file"]["path"], "C:\\a");
        assert_eq!(v["file_result"]["path"], "C:\\b");
        assert_eq!(v["unmapped"]["operation"], "link");

        let mut clone = EventRecord::blank(Operation::Clone, Utf16Path::EMPTY, Utf16Path::EMPTY);
        clone.write_offset = 65536;
        clone.write_length = 1 << 20;
        let v = render_with_target(&clone, "D:\\copy", true, &[], Some(("D:\\src", true)));
        assert_eq!(v["activity_id"], 3);
        assert_eq!(v["activity_name"], "Update");
        assert_eq!(v["file"]["path"], "D:\\copy");
        assert!(
            v.get("file_result").is_none(),
            "a clone's source is no result"
        );
        assert_eq!(v["unmapped"]["operation"], "clone");
        assert_eq!(v["unmapped"]["source_path"], "D:\\src");
        assert_eq!(v["unmapped"]["offset"], 65536);
        assert_eq!(v["unmapped"]["length"], 1 << 20);
        // Without the source at hand: no source_path.
        let v = render(&clone, "D:\\copy", true, &[]);
        assert!(v["unmapped"].get("source_path").is_none());

        let mut mdl = EventRecord::write(Utf16Path::EMPTY, Utf16Path::EMPTY);
        mdl.flags = RecordFlags::MDL_WRITE;
        let v = render(&mdl, "C:\\share\\f", true, &[]);
        assert_eq!(v["activity_id"], 3);
        assert_eq!(v["unmapped"]["operation"], "write");
        assert_eq!(
            v["unmapped"]["flag_names"],
            serde_json::json!(["mdl_write"])
        );
    }

    #[test]
    fn a_target_that_is_not_text_keeps_its_units_and_a_clamped_one_its_flag() {
        let bad: Vec<u8> = [0x2F, 0x78, 0xDC00]
            .iter()
            .flat_map(|u: &u16| u.to_le_bytes())
            .collect();
        let mut rec = EventRecord::blank(Operation::Rename, Utf16Path::EMPTY, Utf16Path::EMPTY);
        rec.target = Utf16Path::from_le_bytes(&bad).unwrap();
        rec.flags = RecordFlags::TARGET_TRUNCATED.union(RecordFlags::TARGET_NAME_FAILED);
        let v = render_with_target(&rec, "/a", true, &[], Some(("/x\u{FFFD}", false)));
        assert_eq!(v["file_result"]["path"], "/x\u{FFFD}");
        assert_eq!(
            v["unmapped"]["target_units"],
            serde_json::json!([0x2F, 0x78, 0xDC00])
        );
        assert_eq!(
            v["unmapped"]["flag_names"],
            serde_json::json!(["target_truncated", "target_name_failed"])
        );
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
    fn a_create_that_reparsed_is_not_rendered_as_a_successful_create() {
        let mut rec = EventRecord::create(Utf16Path::EMPTY, Utf16Path::EMPTY);
        rec.status = STATUS_REPARSE;
        let v = render(&rec, "C:\\Users\\ann\\link", true, &[]);
        assert_eq!(v["status_id"], 99, "{v}");
        assert_eq!(v["status"], "Other");
        assert_eq!(v["status_code"], "0x00000104");
        assert!(v["status_detail"].as_str().unwrap().contains("not opened"));
        // Other informational codes stay successes; a write is never a reparse.
        rec.status = 0x0000_0103;
        assert_eq!(render(&rec, "C:\\a", true, &[])["status_id"], 1);
        let mut w = EventRecord::write(Utf16Path::EMPTY, Utf16Path::EMPTY);
        w.status = STATUS_REPARSE;
        assert_eq!(render(&w, "C:\\a", true, &[])["status_id"], 1);
    }

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
