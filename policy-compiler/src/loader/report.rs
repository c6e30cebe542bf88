//! What a load reports: every [`Problem`] of a rejected set
//! ([`LoadError`]), and the [`Warning`]s of a set that loads.

use std::fmt;
use std::path::PathBuf;

use crate::model::Origin;

/// One problem found while loading.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// File.
    pub file: PathBuf,
    /// 0-based document index in the file, when the problem is in one.
    pub doc: Option<usize>,
    /// Field path inside the document (may be empty).
    pub field: String,
    /// What is wrong.
    pub msg: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(d) = self.doc {
            write!(f, " doc {d}")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.msg)
    }
}

/// A policy set that failed to load: every problem found. The set is
/// rejected whole.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct LoadError {
    /// The problems, in the order found.
    pub problems: Vec<Problem>,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// A warning: the set loads, but something is probably not what was meant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// Where.
    pub origin: Origin,
    /// Field path.
    pub field: String,
    /// What.
    pub msg: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.origin, self.field, self.msg)
    }
}

impl Problem {
    /// A problem at `field` of the document (or list item) `o`.
    pub(super) fn at(o: &Origin, field: &str, msg: String) -> Problem {
        Problem {
            file: o.file.clone(),
            doc: Some(o.doc),
            field: o.field(field),
            msg,
        }
    }
}
