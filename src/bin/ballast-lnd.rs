//! The LND sidecar binary.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    ballast::lnd::sidecar::main(&args)
}
