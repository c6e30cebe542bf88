//! Regenerates `pcap-fixtures/` (deterministic: same bytes every run).
//! Usage: `cargo run -p bench --bin gen-fixtures [-- DIR]`.

fn main() -> anyhow::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../pcap-fixtures").to_string());
    bench::fixtures::write_all(std::path::Path::new(&dir))?;
    println!("fixtures written to {dir}");
    Ok(())
}
