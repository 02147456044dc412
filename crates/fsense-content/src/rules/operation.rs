//! The operations a rule may name: exactly those the sensor reports, no more.
//!
//! A rule on an operation the sensor never reports (a read, a chmod, ...) could never fire; it is
//! refused when the content is compiled, with the list of what the sensor does report, instead
//! of being accepted and silently matching nothing.

use fsense_proto::Operation;

/// An operation as rules name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleOperation {
    Create,
    Write,
    Delete,
    Rename,
    Link,
    Clone,
}

/// Operations people may expect a file sensor to see that this one does not report, each with
/// why, so that the refusal says more than "unknown".
const NOT_REPORTED: &[(&str, &str)] = &[
    ("read", "reads are not reported (only opens, as `create`)"),
    ("open", "opens are reported as `create`"),
    (
        "close",
        "closes are not reported (a write session's close is a `write`)",
    ),
    ("chmod", "attribute and permission changes are not reported"),
    ("chown", "attribute and permission changes are not reported"),
    (
        "setattr",
        "attribute and permission changes are not reported",
    ),
    (
        "set_security",
        "attribute and permission changes are not reported",
    ),
    (
        "truncate",
        "truncation is not reported as an operation of its own",
    ),
    ("execute", "executions are not reported"),
    ("exec", "executions are not reported"),
    (
        "mmap",
        "mappings are not reported (their writes are, as paging I/O)",
    ),
];

impl RuleOperation {
    /// Every operation, in the order of [`Self::index`].
    pub const ALL: [Self; 6] = [
        Self::Create,
        Self::Write,
        Self::Delete,
        Self::Rename,
        Self::Link,
        Self::Clone,
    ];

    /// Lower-case name, as written in rules files (the same as `Operation::as_str`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Write => "write",
            Self::Delete => "delete",
            Self::Rename => "rename",
            Self::Link => "link",
            Self::Clone => "clone",
        }
    }

    /// Position in [`Self::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether events of this operation carry a second name (`target`): the new name of a
    /// rename or a link, the source of a clone.
    pub fn has_target(self) -> bool {
        matches!(self, Self::Rename | Self::Link | Self::Clone)
    }

    /// The rule operation of a record's operation.
    pub fn of(operation: Operation) -> Self {
        match operation {
            Operation::Create => Self::Create,
            Operation::Write => Self::Write,
            Operation::Delete => Self::Delete,
            Operation::Rename => Self::Rename,
            Operation::Link => Self::Link,
            Operation::Clone => Self::Clone,
        }
    }

    /// Parses a rules-file name; the error says why and lists what the sensor reports.
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(op) = Self::ALL.into_iter().find(|op| op.as_str() == text) {
            return Ok(op);
        }
        let known = Self::ALL.map(Self::as_str).join(", ");
        let lower = text.to_ascii_lowercase();
        Err(match NOT_REPORTED.iter().find(|(name, _)| *name == lower) {
            Some((_, why)) => format!(
                "`{text}` is not an operation the sensor reports ({why}), so this rule could never fire; the sensor reports {known}"
            ),
            None => format!(
                "`{text}` is not an operation the sensor reports, so this rule could never fire; the sensor reports {known}"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_indexes_follow_all() {
        for (i, op) in RuleOperation::ALL.into_iter().enumerate() {
            assert_eq!(RuleOperation::parse(op.as_str()), Ok(op));
            assert_eq!(op.index(), i);
        }
    }

    #[test]
    fn operations_the_sensor_cannot_see_are_refused_with_the_reason() {
        let err = RuleOperation::parse("read").unwrap_err();
        assert!(err.contains("reads are not reported"), "{err}");
        assert!(err.contains("could never fire"), "{err}");
        assert!(
            err.contains("create, write, delete, rename, link, clone"),
            "{err}"
        );
        let err = RuleOperation::parse("CHMOD").unwrap_err();
        assert!(err.contains("permission changes"), "{err}");
        let err = RuleOperation::parse("frobnicate").unwrap_err();
        assert!(err.contains("`frobnicate` is not an operation"), "{err}");
        // Names are exact: the rules file spells them in lower case.
        assert!(RuleOperation::parse("Delete").is_err());
    }

    #[test]
    fn every_record_operation_has_its_rule_operation_of_the_same_name() {
        for op in Operation::ALL {
            let rule = RuleOperation::of(op);
            assert_eq!(rule.as_str(), op.as_str());
            assert_eq!(rule.has_target(), op.has_target());
        }
        assert_eq!(Operation::ALL.len(), RuleOperation::ALL.len());
    }

    #[test]
    fn only_two_name_operations_have_a_target() {
        let with: Vec<_> = RuleOperation::ALL
            .into_iter()
            .filter(|op| op.has_target())
            .map(RuleOperation::as_str)
            .collect();
        assert_eq!(with, ["rename", "link", "clone"]);
    }
}
