//! The simulated consumer's checks of records for renames, links, deletes and clones against
//! the operations that caused them.

use fsense_proto::EventRecord;

use crate::client::Client;
use crate::plan::PlannedOp;

impl Client<'_> {
    /// Compares a record that names a set-information, cleanup or FSCTL operation with it.
    pub(crate) fn check_change(
        &self,
        rec: &EventRecord<'_>,
        op: &PlannedOp,
        wrong: &mut Vec<String>,
    ) {
        let _ = (rec, op);
        wrong.push("a record for an operation the protocol has no kind for".into());
    }
}
