//! Untrusted config text: an error or a validated config, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = engine::sources::config::Config::from_yaml(text, "fuzz.yaml", std::path::Path::new("."));
    }
});
