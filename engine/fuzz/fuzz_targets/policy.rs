//! Untrusted policy text (Calico v3 and Kubernetes YAML): the loader and
//! the compiler answer with a set or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok((set, _warnings)) = policy_compiler::loader::load_str("fuzz.yaml", text) {
            let _ = policy_compiler::compile(&set);
        }
    }
});
