//! Untrusted capture files through the pcap/pcapng reader: no panic, and
//! every frame it returns lies inside its arena.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = engine::io::pcap::read_bytes(data, "fuzz", &[2, 0, 0, 0, 0, 1]) {
        for f in &c.frames {
            assert!(f.off + f.len as usize <= c.data.len());
        }
    }
});
