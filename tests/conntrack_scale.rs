//! Conntrack at scale: 1M concurrent flows that saw replies, then 4M new
//! flows against `max_entries: 1048576`: nothing crashes, the established
//! (assured) flows are never dropped to make room and keep being
//! forwarded, new flows make room by dropping other new flows that never
//! saw a reply (Linux's early drop), and every refused flow is counted as
//! `conntrack_full`.

// Tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use engine::pipeline::{Action, Batch, DropReason, Pipeline};
use engine::sources::config::Config;
use engine::tables::conntrack::Conntrack;
use engine::wire::checksum;

const CFG: &str = r#"
ports:
  - {name: uplink, mac: "02:00:00:00:00:01", addresses: ["192.0.2.1/24"]}
  - {name: pods, mac: "02:00:00:00:00:02", addresses: ["10.1.0.1/16"]}
routes:
  - {prefix: "10.1.0.0/16", port: pods}
  - {prefix: "10.0.0.0/8", port: pods, via: "10.1.0.254"}
  - {prefix: "0.0.0.0/0", port: uplink, via: "192.0.2.254"}
neighbors:
  - {ip: "192.0.2.254", mac: "02:00:00:00:00:fe", port: uplink}
  - {ip: "10.1.0.254", mac: "02:00:00:01:00:fe", port: pods}
conntrack: {max_entries: 1048576}
"#;

/// A UDP frame from the outside host 198.18.x.y:sport to 10.(flow).z:53,
/// written into `f` (reused buffer); `reply` swaps the direction.
fn frame(f: &mut [u8; 60], flow: u32, reply: bool) {
    let outside = [198, 18, (flow >> 16) as u8, (flow >> 8) as u8];
    let inside = [
        10,
        2 + (flow >> 22) as u8,
        (flow >> 14) as u8,
        1 + (flow as u8 & 0x3f),
    ];
    let sport = 1024 + (flow & 0x3fff) as u16;
    let (src, dst, sp, dp) = if reply {
        (inside, outside, 53, sport)
    } else {
        (outside, inside, sport, 53)
    };
    *f = [0; 60];
    f[0..6].copy_from_slice(&if reply {
        [2, 0, 0, 0, 0, 2]
    } else {
        [2, 0, 0, 0, 0, 1]
    });
    f[12] = 0x08;
    f[14] = 0x45;
    f[16..18].copy_from_slice(&29u16.to_be_bytes());
    f[22] = 64;
    f[23] = 17;
    f[26..30].copy_from_slice(&src);
    f[30..34].copy_from_slice(&dst);
    let c = checksum::checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f[34..36].copy_from_slice(&sp.to_be_bytes());
    f[36..38].copy_from_slice(&dp.to_be_bytes());
    f[38..40].copy_from_slice(&9u16.to_be_bytes());
}

struct Run {
    p: Pipeline,
    now: u64,
    bufs: Vec<[u8; 60]>,
}

impl Run {
    /// Sends flows `range` (one packet each) in batches of 64; returns how
    /// many were forwarded.
    fn send(&mut self, flows: impl Iterator<Item = u32>, reply: bool) -> usize {
        let mut forwarded = 0;
        let mut flows = flows.peekable();
        while flows.peek().is_some() {
            let mut n = 0;
            for (buf, flow) in self.bufs.iter_mut().zip(flows.by_ref().take(64)) {
                frame(buf, flow, reply);
                n += 1;
            }
            self.now += 1_000;
            let mut b = Batch::new();
            for buf in self.bufs.iter_mut().take(n) {
                b.push(buf, if reply { 1 } else { 0 }).unwrap();
            }
            self.p.process(self.now, &mut b);
            forwarded += b
                .slots()
                .iter()
                .filter(|s| matches!(s.action, Action::Forward(_)))
                .count();
        }
        forwarded
    }
}

#[test]
fn one_million_flows_then_four_million_more() {
    let cfg = Config::from_yaml(CFG, "scale.yaml", std::path::Path::new(".")).unwrap();
    let tables = Arc::new(engine::state::build::replay_tables(&cfg.state()).unwrap());
    let ct = Arc::new(Conntrack::new(cfg.conntrack.max_entries, 5));
    let mut r = Run {
        p: Pipeline::new(tables, ct.clone()),
        now: 1_000_000_000,
        bufs: vec![[0; 60]; 64],
    };
    const ESTABLISHED: u32 = 1_000_000;
    const NEW: u32 = 4_000_000;
    assert_eq!(r.send(0..ESTABLISHED, false), ESTABLISHED as usize);
    assert_eq!(r.send(0..ESTABLISHED, true), ESTABLISHED as usize);
    assert_eq!(ct.len(), ESTABLISHED as usize);
    // 4M more: the table takes what fits, then each new flow either drops
    // an unassured one (another new flow) or is refused and counted.
    let fits = 1_048_576 - ESTABLISHED as usize;
    let got = r.send(ESTABLISHED..ESTABLISHED + NEW, false);
    let full = r.p.counters().drop_count(DropReason::ConntrackFull);
    assert!(got > fits, "new flows made room: {got}");
    assert_eq!(got as u64 + full, u64::from(NEW), "every flow accounted");
    assert_eq!(full, ct.refused_full());
    assert_eq!(ct.evicted_unassured(), (got - fits) as u64);
    assert_eq!(ct.len(), 1_048_576);
    // The established flows still pass, both ways.
    let sample = (0..ESTABLISHED).step_by(97);
    let n = sample.clone().count();
    assert_eq!(
        r.send(sample.clone(), true),
        n,
        "replies of established flows"
    );
    assert_eq!(r.send(sample, false), n, "established flows");
    // Refusals are counted, not silently lost: every packet is accounted.
    let c = r.p.counters();
    assert_eq!(c.actions[0] + c.actions[1] + c.actions[2], c.packets);
}
