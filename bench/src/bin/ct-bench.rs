//! The cost of sharing: the shared, lock-free conntrack table against a
//! plain single-worker table (a `HashMap` with ahash, what a per-worker
//! shard would be), on the same keys, lookups and inserts, one thread; then
//! the shared table read by two threads at once.
//!
//! `cargo run --release -p bench --bin ct-bench [-- --flows 1000,1000000]`

use std::collections::HashMap;
use std::time::Instant;

use clap::Parser;
use engine::tables::conntrack::{Conntrack, State, Timeouts, Tuple};
use engine::wire::Family;

#[derive(Parser)]
struct Args {
    #[arg(long, value_delimiter = ',', default_values_t = [1000usize, 1_000_000])]
    flows: Vec<usize>,
    #[arg(long, default_value_t = 5_000_000)]
    lookups: usize,
}

fn key(i: u64) -> Tuple {
    Tuple {
        src: u128::from(0xc612_0000u32 | (i as u32 & 0xffff)),
        dst: u128::from(0x0a40_0000u32 | ((i >> 16) as u32 & 0xffff)),
        sport: (i * 7) as u16,
        dport: 443,
        proto: 6,
        family: Family::V4,
        zone: 0,
    }
}

/// A stand-in for a per-worker table: the entry a shard would keep.
#[derive(Clone, Copy)]
#[allow(dead_code)]
struct Plain {
    reply: Tuple,
    state: u8,
    last_seen: u64,
}

fn main() {
    let a = Args::parse();
    let to = Timeouts::default();
    for &n in &a.flows {
        let keys: Vec<Tuple> = (0..n as u64).map(key).collect();
        // Lookup order: a fixed pseudo-random walk over the flows.
        let order: Vec<usize> = (0..a.lookups as u64)
            .map(|i| ((i.wrapping_mul(0x9e37_79b9_7f4a_7c15)) >> 20) as usize % n)
            .collect();

        let ct = Conntrack::new(n * 2, 1);
        let t = Instant::now();
        for k in &keys {
            let _ = ct.insert(k, &k.reverse(), State::Established, 0, 0, 1, &to);
        }
        let ins_shared = t.elapsed().as_secs_f64() * 1e9 / n as f64;
        let t = Instant::now();
        let mut hits = 0usize;
        for &i in &order {
            let k = &keys[i];
            if let Some(h) = ct.lookup(k, ct.hash(k), 2, &to) {
                hits += 1;
                ct.touch(&h, 0x10, 2);
            }
        }
        let look_shared = t.elapsed().as_secs_f64() * 1e9 / order.len() as f64;
        assert_eq!(hits, order.len());

        let mut plain: HashMap<Tuple, Plain, ahash::RandomState> =
            HashMap::with_capacity_and_hasher(n * 2, ahash::RandomState::with_seeds(1, 2, 3, 4));
        let t = Instant::now();
        for k in &keys {
            let e = Plain {
                reply: k.reverse(),
                state: 3,
                last_seen: 1,
            };
            plain.insert(*k, e);
            plain.insert(k.reverse(), e);
        }
        let ins_plain = t.elapsed().as_secs_f64() * 1e9 / n as f64;
        let t = Instant::now();
        let mut hits = 0usize;
        for &i in &order {
            if let Some(e) = plain.get_mut(&keys[i]) {
                hits += 1;
                e.last_seen = 2;
            }
        }
        let look_plain = t.elapsed().as_secs_f64() * 1e9 / order.len() as f64;
        assert_eq!(hits, order.len());

        // Two threads reading (and touching) the shared table at once.
        let t = Instant::now();
        std::thread::scope(|s| {
            for w in 0..2 {
                let (ct, keys, order) = (&ct, &keys, &order);
                s.spawn(move || {
                    for &i in order.iter().skip(w).step_by(2) {
                        let k = &keys[i];
                        if let Some(h) = ct.lookup(k, ct.hash(k), 3, &to) {
                            ct.touch(&h, 0x10, 3);
                        }
                    }
                });
            }
        });
        let two = order.len() as f64 / t.elapsed().as_secs_f64() / 1e6;

        println!(
            "{n} flows: shared table lookup+touch {look_shared:.1} ns, insert {ins_shared:.0} ns; single-worker HashMap lookup+update {look_plain:.1} ns, insert {ins_plain:.0} ns (2 keys); sharing costs {:.2}x on lookups; 2 threads on the shared table: {two:.1} M lookups/s (vs {:.1} M on one)",
            look_shared / look_plain,
            1e3 / look_shared
        );
    }
}
