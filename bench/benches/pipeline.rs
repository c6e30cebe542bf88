//! divan benchmark: the pipeline over `imix.pcap` with allow-all policy and
//! the bundled config plus 1,000 routes, one worker, batches of 64.
//! `cargo bench -p bench --bench pipeline`.

use std::sync::Arc;

use engine::pipeline::{Batch, Pipeline};
use engine::sources::config::Config;
use engine::tables::Tables;

fn main() {
    divan::main();
}

struct Setup {
    tables: Arc<Tables>,
    pristine: Vec<Vec<u8>>,
}

fn setup(routes: usize) -> Setup {
    let text = bench::fixtures::config_yaml(routes, None);
    let cfg = Config::from_yaml(&text, "bench.yaml", std::path::Path::new(".")).expect("config");
    let tables = Arc::new(engine::state::build::replay_tables(&cfg.state()).expect("tables"));
    let fx = bench::fixtures::workload(&bench::fixtures::Workload::default());
    Setup {
        tables,
        pristine: fx.frames.into_iter().map(|f| f.1).collect(),
    }
}

#[divan::bench(args = [0, 1000, 10000])]
fn imix_batch64(bencher: divan::Bencher<'_, '_>, routes: usize) {
    let s = setup(routes);
    let mut pipeline = Pipeline::new(
        s.tables.clone(),
        Arc::new(engine::tables::conntrack::Conntrack::new(1 << 16, 1)),
    );
    let mut work = s.pristine.clone();
    bencher
        .counter(divan::counter::ItemsCount::new(work.len()))
        .bench_local(|| {
            for (chunk, orig) in work.chunks_mut(64).zip(s.pristine.chunks(64)) {
                let mut batch = Batch::new();
                for f in chunk.iter_mut() {
                    let _ = batch.push(f.as_mut_slice(), 0);
                }
                pipeline.process(1, &mut batch);
                for (slot, o) in batch.slots_mut().iter_mut().zip(orig) {
                    let w = slot.written as usize;
                    slot.frame[..w].copy_from_slice(&o[..w]);
                }
            }
        });
}
