//! `parsec-load` command line: parse, run on a small tokio runtime, print the
//! report (text, or one JSON object with `--json`). Exit status: 0 when every
//! request succeeded, 1 when some failed or the run could not start.

use std::process::ExitCode;

use parsec_load::args::Args;

/// The server's allocator (see `server/src/main.rs`): the tool shares the
/// machine with the server it measures, and spends 5–9 % less CPU with it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args: Args = argh::from_env();
    let cfg = match args.resolve() {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("parsec-load: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("parsec-load: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let json = cfg.json;
    match runtime.block_on(parsec_load::run(cfg)) {
        Ok(report) => {
            if json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.to_text());
            }
            if report.errors() == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("parsec-load: {e}");
            ExitCode::FAILURE
        }
    }
}
