//! `slowfast-device-bench BUNDLE`: the device runtime's benchmark figures
//! ([`slowfast_core::bench::device`]) of a bundle, as one JSON object on stdout. `slowfast bench
//! device` runs it as a child process, so that its memory figure is the memory of a process
//! that holds an engine and nothing of the trainer.

use std::process::ExitCode;

/// The CLI's allocator, so that the figures compare with the rest of `slowfast bench`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(bundle), None) = (args.next(), args.next()) else {
        eprintln!("usage: slowfast-device-bench BUNDLE");
        return ExitCode::from(2);
    };
    let figures = slowfast_core::bench::device(std::path::Path::new(&bundle))
        .map_err(|e| e.to_string())
        .and_then(|f| serde_json::to_string(&f).map_err(|e| e.to_string()));
    match figures {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
