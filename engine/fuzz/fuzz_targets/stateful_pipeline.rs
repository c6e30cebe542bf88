//! Untrusted frames over time through the whole pipeline with state: the
//! kernel fixture's node (`pcap-fixtures/kernel/sluice-policy.yaml`: a
//! Calico policy, two service VIPs with DNAT, masquerade) and a 64-entry
//! connection table, so connections open, translate, expire, fill the
//! table and make room across a sequence of batches.
//!
//! Input: one flags byte (bit 0: complete partial checksums, as live;
//! bit 1: make every frame's checksums valid first, so mutations get past
//! checksum validation into conntrack, NAT and policy),
//! then batches, each `[frames 0..=15 | time step << 4]` and that many
//! frames of `[length / 4][ingress port]` and the bytes. Time advances by
//! the step squared in seconds between batches (so UDP and TCP timeouts
//! pass). Properties: no panic; every frame gets an action; a forwarded
//! frame still parses, one TTL lower; the table never holds more than its
//! capacity.
#![no_main]

use std::sync::{Arc, OnceLock};

use engine::pipeline::{Action, Batch, Pipeline};
use engine::sources::config::Config;
use engine::tables::conntrack::Conntrack;
use engine::tables::Tables;
use libfuzzer_sys::fuzz_target;

const CAPACITY: usize = 64;

fn tables() -> Arc<Tables> {
    static T: OnceLock<Arc<Tables>> = OnceLock::new();
    T.get_or_init(|| {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../pcap-fixtures/kernel/sluice-policy.yaml");
        let cfg = Config::load(&path).expect("the kernel fixture's config");
        Arc::new(engine::state::build::replay_tables(&cfg.state()).expect("its tables"))
    })
    .clone()
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    thread_local! {
        static P: std::cell::RefCell<Option<(Pipeline, Arc<Conntrack>)>> =
            const { std::cell::RefCell::new(None) };
    }
    P.with(|cell| {
        let mut slot = cell.borrow_mut();
        let (pipeline, ct) = slot.get_or_insert_with(|| {
            let ct = Arc::new(Conntrack::new(CAPACITY, 1));
            (Pipeline::new(tables(), ct.clone()), ct)
        });
        // Every input starts from an empty table.
        ct.clear();
        pipeline.complete_partial_checksums(flags & 1 != 0);
        let mut now = 1_000_000_000u64;
        while let Some((&head, body)) = rest.split_first() {
            rest = body;
            let count = usize::from(head & 15);
            let step = u64::from(head >> 4);
            now += step * step * 1_000_000_000 + 1_000;
            let mut frames: Vec<(Vec<u8>, u16)> = Vec::new();
            while frames.len() < count && rest.len() >= 2 {
                let len = usize::from(rest[0]) * 4;
                let port = u16::from(rest[1] & 1);
                let n = len.min(rest.len() - 2);
                let mut f = rest[2..2 + n].to_vec();
                if flags & 2 != 0 {
                    engine::wire::build::fix_checksums(&mut f);
                }
                frames.push((f, port));
                rest = &rest[2 + n..];
            }
            let before: Vec<_> = frames.iter().map(|(f, _)| engine::wire::parse(f)).collect();
            let packets = pipeline.counters().packets;
            let mut batch = Batch::new();
            for (f, port) in frames.iter_mut() {
                let _ = batch.push(f.as_mut_slice(), *port);
            }
            pipeline.process(now, &mut batch);
            assert_eq!(
                (pipeline.counters().packets - packets) as usize,
                batch.len(),
                "every frame gets an action"
            );
            for (s, b) in batch.slots().iter().zip(&before) {
                if let Action::Forward(_) = s.action {
                    let b = b.as_ref().expect("only parsed frames are forwarded");
                    let a = engine::wire::parse(s.frame).expect("a forwarded frame still parses");
                    assert_eq!(a.ttl + 1, b.ttl, "TTL one lower");
                    assert_eq!(a.family, b.family);
                }
            }
            assert!(ct.len() <= CAPACITY, "table within capacity");
        }
    });
});
