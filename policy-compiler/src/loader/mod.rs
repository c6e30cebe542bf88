//! The loader: paths → files → YAML documents → typed, validated objects
//! (policy.md section 1).
//!
//! - A path is a file or a directory; a directory is read recursively, every
//!   `*.yaml` / `*.yml`, in sorted path order.
//! - A file holds documents separated by `---`; a `kind: List` document holds
//!   its objects in `items`; a document that is a YAML sequence is a list of
//!   objects. Empty documents are skipped.
//! - Errors name the file, the **0-based** index of the YAML document in the
//!   file (`doc 0` is the first document) and the field path inside it
//!   (`items[2].spec.ingress[0].destination.ports[1]`).
//! - Every document is first read into a plain tree that keeps repeated
//!   mapping keys, so a repeated key is reported with its path (the typed
//!   pass alone would silently keep one of them), and so that integers wider
//!   than 64 bits in ignored fields do not stop the load.
//! - All problems of a set are collected; a set with any problem is rejected
//!   whole ([`LoadError`] lists them all).
//!
//! Files: `files` (paths, files, documents, dispatch by kind), `node` (the
//! plain tree that keeps repeated keys), `objects` (one document into a
//! typed object), `checks` (across documents), `report` (problems and
//! warnings).

mod checks;
mod files;
mod node;
mod objects;
mod report;

pub use files::{load, load_str};
pub use report::{LoadError, Problem, Warning};
