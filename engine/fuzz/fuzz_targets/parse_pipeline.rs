//! Untrusted frames through the parser and the whole pipeline.
//!
//! The input is split into frames (each prefixed by a one-byte length and a
//! one-byte ingress port); every frame goes through `wire::parse` and the
//! batch through `Pipeline::process` with the bundled config's tables. The
//! properties: no panic, every frame gets an action, and a forwarded frame
//! still parses, with the same addresses and a TTL one lower.
#![no_main]

use std::sync::{Arc, OnceLock};

use engine::sources::config::Config;
use engine::pipeline::{Action, Batch, Pipeline};
use engine::tables::conntrack::Conntrack;
use engine::tables::Tables;
use libfuzzer_sys::fuzz_target;

fn tables() -> Arc<Tables> {
    static T: OnceLock<Arc<Tables>> = OnceLock::new();
    T.get_or_init(|| {
        let text = include_str!("../../../pcap-fixtures/sluice.yaml");
        let cfg = Config::from_yaml(text, "sluice.yaml", std::path::Path::new(".")).expect("bundled config");
        Arc::new(engine::state::build::replay_tables(&cfg.state()).expect("bundled tables"))
    })
    .clone()
}

fuzz_target!(|data: &[u8]| {
    let mut frames: Vec<(Vec<u8>, u16)> = Vec::new();
    let mut rest = data;
    while rest.len() >= 2 && frames.len() < 64 {
        let len = usize::from(rest[0]) * 4;
        let port = u16::from(rest[1] & 1);
        let body = &rest[2..];
        let n = len.min(body.len());
        frames.push((body[..n].to_vec(), port));
        rest = &body[n..];
    }
    let before: Vec<_> = frames.iter().map(|(f, _)| engine::wire::parse(f)).collect();
    // One pipeline and table reused across runs (allocation dominated the
    // run time); the table is emptied first so every input starts fresh.
    thread_local! {
        static P: std::cell::RefCell<Option<(Pipeline, Arc<Conntrack>)>> = const { std::cell::RefCell::new(None) };
    }
    P.with(|cell| {
    let mut slot = cell.borrow_mut();
    let (pipeline, ct) = slot.get_or_insert_with(|| {
        let ct = Arc::new(Conntrack::new(4096, 1));
        (Pipeline::new(tables(), ct.clone()), ct)
    });
    ct.clear();
    let before_packets = pipeline.counters().packets;
    let mut batch = Batch::new();
    for (f, port) in frames.iter_mut() {
        let _ = batch.push(f.as_mut_slice(), *port);
    }
    pipeline.process(1, &mut batch);
    for (slot, b) in batch.slots().iter().zip(&before) {
        if let Action::Forward(_) = slot.action {
            let b = b.as_ref().expect("only parsed frames are forwarded");
            let a = engine::wire::parse(slot.frame).expect("a forwarded frame still parses");
            assert_eq!((a.src, a.dst, a.sport, a.dport), (b.src, b.dst, b.sport, b.dport));
            assert_eq!(a.ttl + 1, b.ttl);
        }
    }
    assert_eq!((pipeline.counters().packets - before_packets) as usize, batch.len());
    });
});
