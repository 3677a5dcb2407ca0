//! The Core Lightning plugin binary.

use std::process::ExitCode;

fn main() -> ExitCode {
    if !ballast::cln::launched_by_lightningd() {
        println!("{}", ballast::cln::USAGE);
        if std::env::args().nth(1).as_deref() == Some("simulate") {
            println!("\n`ballast simulate` (the whole engine on a simulated network) is not part of this build yet.");
        }
        return ExitCode::SUCCESS;
    }
    // Two workers: hooks that reach cln-plugin must not queue behind a method doing heavy
    // work, and the machines ballast runs on are small.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ballast: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(ballast::cln::run_plugin()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ballast: {e:#}");
            ExitCode::FAILURE
        }
    }
}
