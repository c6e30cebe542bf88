//! Builds the benchmark's XDP programs with clang, as `engine/build.rs`
//! builds the XDP redirector: the traffic generator (`bpf/trafficgen.bpf.c`,
//! `peer-gen tx --engine xdp`) and the ceiling forwarder
//! (`bpf/xdp_fwd.bpf.c`, `peer-gen xdp-fwd`); the same compiler
//! (`SLUICE_CLANG` overrides it) and the libbpf headers (`libbpf-dev`; `scripts/ensure-deps.sh` installs both).

use std::path::{Path, PathBuf};
use std::process::Command;

fn fail(msg: &str) -> ! {
    eprintln!("\nerror: {msg}\n");
    panic!("{msg}");
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default());
    const PROGRAMS: [&str; 2] = ["trafficgen", "xdp_fwd"];
    for p in PROGRAMS {
        let src = manifest.join("bpf").join(format!("{p}.bpf.c"));
        println!("cargo:rerun-if-changed={}", src.display());
    }
    println!("cargo:rerun-if-env-changed=SLUICE_CLANG");

    if !Path::new("/usr/include/bpf/bpf_helpers.h").exists() {
        fail(
            "/usr/include/bpf/bpf_helpers.h is missing: the benchmark's XDP programs need the \
             libbpf headers (install libbpf-dev; scripts/ensure-deps.sh does)",
        );
    }
    // `asm/types.h` lives in the multiarch directory on Debian, which
    // `-target bpf` does not search.
    let multiarch = match std::env::var("CARGO_CFG_TARGET_ARCH")
        .unwrap_or_default()
        .as_str()
    {
        "x86_64" => "x86_64-linux-gnu",
        "aarch64" => "aarch64-linux-gnu",
        "riscv64" => "riscv64-linux-gnu",
        "powerpc64" => "powerpc64le-linux-gnu",
        "s390x" => "s390x-linux-gnu",
        _ => "",
    };
    let inc = Path::new("/usr/include").join(multiarch);

    let clang = std::env::var("SLUICE_CLANG").unwrap_or_else(|_| "clang".to_string());
    for p in PROGRAMS {
        let src = manifest.join("bpf").join(format!("{p}.bpf.c"));
        let mut cmd = Command::new(&clang);
        cmd.args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"]);
        if !multiarch.is_empty() && inc.is_dir() {
            cmd.arg(format!("-I{}", inc.display()));
        }
        cmd.arg("-c")
            .arg(&src)
            .arg("-o")
            .arg(out.join(format!("{p}.bpf.o")));
        let what = format!("compiling bench/bpf/{p}.bpf.c");
        let o = match cmd.output() {
            Ok(o) => o,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => fail(&format!(
                "{what}: `{clang}` not found; install clang, llvm and libbpf-dev \
                 (scripts/ensure-deps.sh does) or set SLUICE_CLANG"
            )),
            Err(e) => fail(&format!("{what}: cannot run {cmd:?}: {e}")),
        };
        if !o.status.success() {
            fail(&format!(
                "{what} failed ({}):\n{}{}",
                o.status,
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ));
        }
    }
}
