//! The binary: parse flags, run, turn the outcome into an exit code. Nothing else lives here.

use std::process::ExitCode;

use gptstream::Args;
use gptstream::error::{self, exit};

fn main() -> ExitCode {
    let args = match Args::parse_from_env() {
        Ok(args) => args,
        Err(err) => {
            // --help and --version come through here too, with exit code 0.
            let _ = err.print();
            return ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(exit::USAGE));
        }
    };
    match gptstream::run(args) {
        Ok(()) => ExitCode::from(exit::SUCCESS),
        Err(err) if error::is_broken_pipe(&err) => ExitCode::from(exit::SUCCESS),
        // Said already: by the sink (`interrupted ...`), or by the panic hook.
        Err(err) if gptstream::is_reported(&err) => ExitCode::from(error::exit_code(&err)),
        Err(err) => {
            eprintln!("gptstream: {err:#}");
            ExitCode::from(error::exit_code(&err))
        }
    }
}
