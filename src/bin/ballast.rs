//! The Core Lightning plugin binary.

use std::process::ExitCode;

fn main() -> ExitCode {
    // `ballast simulate ...` runs standalone, whoever started it.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("simulate") {
        return ballast::sim::main(&args[1..]);
    }
    if !ballast::cln::launched_by_lightningd() {
        println!("{}", ballast::cln::USAGE);
        return ExitCode::SUCCESS;
    }
    // Two workers: hooks that reach cln-plugin must not queue behind a method doing heavy
    // work, and the machines ballast runs on are small.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .on_thread_start(ballast::cln::yield_to_hooks)
        // Held HTLCs wait on their store writes in this pool; a bounded pool queues them
        // instead of growing a thread (and its stack) per HTLC.
        .max_blocking_threads(32)
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
