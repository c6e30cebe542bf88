//! `sluice policy eval --felix FILE`: verdicts for packets against a Felix
//! stream recorded by `sluice felix-shim --record` (issue 18, item 5).
//!
//! The file holds the length-framed `ToDataplane` messages as Felix wrote
//! them. They are applied to a [`FelixModel`] as a session applies them,
//! up to the end of the file, and the model's policy is compiled by the
//! Felix front end ([`PolicyCompiler`]) into the classifier the data plane
//! would use; the packets are answered by that classifier, in the same
//! output as with `--policy` (`policy_compiler::cli::eval_with`), so
//! `decided_by` names the tier, the policy id and the rule.
//!
//! Where the stream is not a whole snapshot, evaluation still goes on, and
//! stderr says so:
//! - No `InSync` in the file: a session would not have enforced the model
//!   yet (it keeps the tables it had); the verdicts are those of the
//!   partial model as it stands at the end of the file.
//! - The file ends inside a frame (a recording cut short): the whole
//!   frames before the cut are used, and the exit status is 2 (bad input),
//!   as `replay` does with a truncated capture.
//! - Endpoints that fail closed (a reference that does not resolve) are
//!   listed, with why.
//!
//! A frame that does not decode, or a message the model refuses (a
//! protocol violation that would end a session), is an error naming the
//! frame (exit 2).

use std::io::{BufRead, Read, Write};
use std::path::Path;

use crate::sources::felix::codec::{decode_to_dataplane, FrameReader, ReadError};
use crate::sources::felix::model::Applied;
use crate::sources::felix::{FelixModel, FrameError, PolicyCompiler, DEFAULT_MAX_FRAME};

/// What reading a recorded stream found besides the model.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    /// Whole frames read.
    pub frames: u64,
    /// Frames whose message type this build does not know (ignored).
    pub unknown: u64,
    /// Whether `InSync` came.
    pub in_sync: bool,
    /// Why the file ended early (inside a frame), if it did.
    pub truncated: Option<String>,
}

/// The model of the stream in `r`, applied frame by frame as a session
/// does; errors name the frame (0-based).
pub fn read_model(r: impl Read) -> Result<(FelixModel, Recorded), String> {
    let mut frames = FrameReader::new(r, DEFAULT_MAX_FRAME);
    let mut model = FelixModel::default();
    let mut rec = Recorded::default();
    loop {
        let payload = match frames.next_frame() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(ReadError::Frame(e @ FrameError::Truncated { .. })) => {
                rec.truncated = Some(e.to_string());
                break;
            }
            Err(e) => return Err(e.to_string()),
        };
        let index = rec.frames;
        rec.frames += 1;
        let msg = decode_to_dataplane(index, &payload).map_err(|e| e.to_string())?;
        let Some(p) = msg.payload else {
            rec.unknown += 1;
            continue;
        };
        match model.apply(p) {
            Ok(Applied::InSync) => rec.in_sync = true,
            Ok(_) => {}
            Err(v) => return Err(format!("frame {index}: {v}")),
        }
    }
    Ok((model, rec))
}

/// `policy eval --felix FILE`: writes one verdict line per packet line to
/// `out`, notes to `err`; returns the exit status.
pub fn eval(
    file: &Path,
    packets: &mut dyn BufRead,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    let f = match std::fs::File::open(file) {
        Ok(f) => f,
        Err(e) => {
            let _ = writeln!(err, "sluice: {}: cannot read: {e}", file.display());
            return 2;
        }
    };
    let (model, rec) = match read_model(std::io::BufReader::new(f)) {
        Ok(x) => x,
        Err(e) => {
            let _ = writeln!(err, "sluice: {}: {e}", file.display());
            return 2;
        }
    };
    let name = file.display();
    if !rec.in_sync {
        let _ = writeln!(
            err,
            "sluice: {name}: no InSync in {} frames: the model is partial (a session would not enforce it yet); evaluating it as it stands",
            rec.frames
        );
    }
    if rec.unknown > 0 {
        let _ = writeln!(
            err,
            "sluice: {name}: {} messages of unknown type ignored",
            rec.unknown
        );
    }
    let compiled = PolicyCompiler::default().compile(&model);
    for (ep, why) in &compiled.report.fail_closed {
        let _ = writeln!(err, "sluice: {name}: endpoint {ep} fails closed: {why}");
    }
    if let Err(e) = policy_compiler::cli::eval_with(&compiled.classifier, packets, out) {
        let _ = writeln!(err, "sluice: {e}");
        return e.exit_code();
    }
    match rec.truncated {
        Some(t) => {
            let _ = writeln!(
                err,
                "sluice: {name}: {t}; evaluated the {} whole frames before it",
                rec.frames
            );
            2
        }
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    // Tests: a failed unwrap is a failed test.
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::sources::felix::codec::encode;
    use crate::sources::felix::proto::{self, to_dataplane::Payload, ToDataplane};

    fn msg(p: Payload) -> Vec<u8> {
        encode(&ToDataplane {
            sequence_number: 0,
            payload: Some(p),
        })
    }

    #[test]
    fn a_stream_without_insync_is_partial_and_a_cut_one_truncated() {
        let mut s = msg(Payload::IpsetUpdate(proto::IpSetUpdate {
            id: "s".into(),
            members: vec!["10.0.0.1/32".into()],
            r#type: proto::IpSetType::Net as i32,
        }));
        let (m, rec) = read_model(&s[..]).unwrap();
        assert_eq!((rec.frames, rec.in_sync, m.ip_sets.len()), (1, false, 1));
        s.extend(msg(Payload::InSync(proto::InSync {})));
        let whole = s.len();
        s.extend(msg(Payload::InSync(proto::InSync {})));
        let (_, rec) = read_model(&s[..whole + 3]).unwrap();
        assert_eq!((rec.frames, rec.in_sync), (2, true));
        assert!(rec.truncated.unwrap().contains("frame 2"));
        // A delta for a set never sent is a violation, named by frame.
        let bad = msg(Payload::IpsetDeltaUpdate(proto::IpSetDeltaUpdate {
            id: "nope".into(),
            ..Default::default()
        }));
        let e = read_model(&bad[..]).unwrap_err();
        assert!(e.starts_with("frame 0: "), "{e}");
    }
}
