//! Builds the XDP redirector (`bpf/redirect.bpf.c`) with clang, and runs a
//! host probe (`bpf/layout_probe.c`) that prints the C layouts of
//! `bpf/shared.h` and `linux/if_xdp.h` for the layout test. Also names the
//! compiler and target for `sluice_build_info`.
//!
//! Needs clang with the BPF target and the libbpf headers (`libbpf-dev`);
//! `scripts/ensure-deps.sh` installs both. `SLUICE_CLANG` overrides the
//! compiler.

use std::path::{Path, PathBuf};
use std::process::Command;

fn fail(msg: &str) -> ! {
    eprintln!("\nerror: {msg}\n");
    panic!("{msg}");
}

fn clang() -> String {
    std::env::var("SLUICE_CLANG").unwrap_or_else(|_| "clang".to_string())
}

fn run(cmd: &mut Command, what: &str) -> Vec<u8> {
    let out = match cmd.output() {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => fail(&format!(
            "{what}: `{}` not found. engine/build.rs compiles the XDP program \
             engine/bpf/redirect.bpf.c with clang; install clang, llvm and \
             libbpf-dev (scripts/ensure-deps.sh does) or set SLUICE_CLANG",
            cmd.get_program().to_string_lossy()
        )),
        Err(e) => fail(&format!("{what}: cannot run {cmd:?}: {e}")),
    };
    if !out.status.success() {
        fail(&format!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    out.stdout
}

/// Include directories for the kernel UAPI headers (`asm/types.h` lives in
/// the multiarch directory on Debian, which `-target bpf` does not search).
fn include_args() -> Vec<String> {
    let mut args = Vec::new();
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let multiarch = match arch.as_str() {
        "x86_64" => "x86_64-linux-gnu",
        "aarch64" => "aarch64-linux-gnu",
        "riscv64" => "riscv64-linux-gnu",
        "powerpc64" => "powerpc64le-linux-gnu",
        "s390x" => "s390x-linux-gnu",
        _ => "",
    };
    let dir = Path::new("/usr/include").join(multiarch);
    if !multiarch.is_empty() && dir.is_dir() {
        args.push(format!("-I{}", dir.display()));
    }
    args
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default());
    let bpf = manifest.join("bpf");
    for f in ["redirect.bpf.c", "shared.h", "layout_probe.c"] {
        println!("cargo:rerun-if-changed={}", bpf.join(f).display());
    }
    println!("cargo:rerun-if-env-changed=SLUICE_CLANG");
    build_info();

    if !Path::new("/usr/include/bpf/bpf_helpers.h").exists() {
        fail(
            "/usr/include/bpf/bpf_helpers.h is missing: the XDP program needs the \
             libbpf headers (install libbpf-dev; scripts/ensure-deps.sh does)",
        );
    }
    let inc = include_args();

    // The XDP program.
    let obj = out.join("redirect.bpf.o");
    run(
        Command::new(clang())
            .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
            .args(&inc)
            .arg("-c")
            .arg(bpf.join("redirect.bpf.c"))
            .arg("-o")
            .arg(&obj),
        "compiling engine/bpf/redirect.bpf.c",
    );

    // The layout probe: compiled for the host and run here.
    let probe = out.join("layout_probe");
    run(
        Command::new(clang())
            .args(["-O0", "-Wall", "-Werror"])
            .args(&inc)
            .arg(bpf.join("layout_probe.c"))
            .arg("-o")
            .arg(&probe),
        "compiling engine/bpf/layout_probe.c",
    );
    let layouts = run(&mut Command::new(&probe), "running the layout probe");
    if let Err(e) = std::fs::write(out.join("c_layouts.rs"), layouts) {
        fail(&format!("writing c_layouts.rs: {e}"));
    }
}

/// What `sluice_build_info` reports beside the version: the compiler's
/// version (cargo reruns build scripts when the compiler changes) and the
/// target triple.
fn build_info() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|v| v.split_whitespace().nth(1).map(str::to_string))
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=SLUICE_RUSTC_VERSION={version}");
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".to_string());
    println!("cargo:rustc-env=SLUICE_TARGET={target}");
}
