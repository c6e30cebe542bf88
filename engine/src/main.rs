//! The `sluice` binary: clap parsing, then the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = engine::cli::Cli::parse();
    let code = engine::cli::main(cli);
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(1))
}
