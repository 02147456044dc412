//! The simulated consumer's checks of records for renames, links, deletes and clones against
//! the operations that caused them (the record's thread id names the operation).

use fsense_proto::{EventRecord, Operation, RecordFlags};

use crate::changes::SetInfoKind;
use crate::client::Client;
use crate::plan::PlannedOp;
use crate::verifier::violation;

impl Client<'_> {
    /// Compares a record that names a set-information, cleanup or FSCTL operation with it.
    pub(crate) fn check_change(
        &self,
        rec: &EventRecord<'_>,
        op: &PlannedOp,
        wrong: &mut Vec<String>,
    ) {
        match op {
            PlannedOp::SetInfo(s) => {
                if s.hostile.is_some() {
                    wrong
                        .push("a hostile set-information buffer was reported, not rejected".into());
                    return;
                }
                let expected = match s.kind {
                    SetInfoKind::Rename { .. } => Operation::Rename,
                    SetInfoKind::Link { .. } => Operation::Link,
                    _ => {
                        if rec.operation == Operation::Delete {
                            violation(
                                "DELETE_WHEN_ASKED",
                                format!(
                                    "record {}: a delete reported at its request (set-information op {}), \
                                     not when the file went (cleanup)",
                                    rec.sequence, s.op_id
                                ),
                            );
                        }
                        wrong.push(format!(
                            "a record ({:?}) for a set-information that is no rename or link",
                            rec.operation
                        ));
                        return;
                    }
                };
                if rec.operation != expected {
                    wrong.push(format!(
                        "operation {:?}, expected {expected:?}",
                        rec.operation
                    ));
                }
                if rec.status != s.status as u32 {
                    wrong.push("status".into());
                }
                if rec.path.as_le_bytes() != s.source_le.as_slice() {
                    wrong.push("old name".into());
                }
                let target = s.target_le.as_deref().map_or(&[][..], Vec::as_slice);
                let got = rec.target.as_le_bytes();
                let target_ok = if rec.flags.contains(RecordFlags::TARGET_NAME_FAILED) {
                    false
                } else if rec.flags.contains(RecordFlags::TARGET_TRUNCATED) {
                    got.len() < target.len() && target.starts_with(got)
                } else {
                    got == target
                };
                if !target_ok {
                    wrong.push(format!(
                        "new name ({} units, expected {})",
                        got.len() / 2,
                        target.len() / 2
                    ));
                }
                let replace = matches!(s.kind, SetInfoKind::Rename { replace: true, .. });
                if rec.flags.contains(RecordFlags::REPLACE_EXISTING) != replace {
                    wrong.push("REPLACE_EXISTING flag".into());
                }
            }
            PlannedOp::Cleanup(c) => {
                if rec.operation != Operation::Delete {
                    wrong.push(format!("a {:?} record for a cleanup", rec.operation));
                    return;
                }
                if !c.deletes {
                    violation(
                        if c.cancelled {
                            "DELETE_CANCELLED_REPORTED"
                        } else {
                            "DELETE_NOT_HAPPENED"
                        },
                        format!(
                            "record {}: a delete for cleanup op {} of a file that is still there{}",
                            rec.sequence,
                            c.op_id,
                            if c.cancelled {
                                " (its delete was asked for, then withdrawn)"
                            } else {
                                ""
                            }
                        ),
                    );
                    wrong.push("delete of a file that was not deleted".into());
                    return;
                }
                if rec.path.as_le_bytes() != c.name_le.as_slice() {
                    wrong.push(format!(
                        "deleted name ({} units, expected {})",
                        rec.path.as_le_bytes().len() / 2,
                        c.name_le.len() / 2
                    ));
                }
                if rec.status != 0 {
                    wrong.push("status".into());
                }
                if rec.flags.contains(RecordFlags::POSIX_DELETE) != c.posix {
                    wrong.push("POSIX_DELETE flag".into());
                }
            }
            PlannedOp::Fsctl(f) => {
                if !f.must_report() {
                    wrong.push(if f.hostile.is_some() {
                        "a hostile FSCTL input was reported, not rejected".into()
                    } else {
                        format!("a record for FSCTL {:#x}, which is no block clone", f.code)
                    });
                    return;
                }
                if rec.operation != Operation::Clone {
                    wrong.push(format!("operation {:?}, expected Clone", rec.operation));
                }
                if rec.write_offset != f.target_offset
                    || rec.information != f.byte_count
                    || u64::from(rec.write_length) != f.byte_count.min(u64::from(u32::MAX))
                {
                    wrong.push("target offset / byte count".into());
                }
                if rec.status != f.status as u32 {
                    wrong.push("status".into());
                }
                let file = &self.plan.files[f.file];
                let got = rec.path.as_le_bytes();
                let must_have = self.handle_has_name(f.create_op) && file.shape.is_valid();
                let name_ok = if got.is_empty() {
                    !must_have || file.path_le.is_empty()
                } else {
                    got == file.path_le.as_slice()
                        || rec.flags.contains(RecordFlags::PATH_TRUNCATED)
                            && file.path_le.starts_with(got)
                };
                if !name_ok {
                    wrong.push(format!(
                        "clone target file name ({} units, expected {}, name known {must_have})",
                        got.len() / 2,
                        file.path_le.len() / 2
                    ));
                }
            }
            PlannedOp::Create(_) | PlannedOp::Write(_) | PlannedOp::MdlWrite(_) => {}
        }
    }
}
