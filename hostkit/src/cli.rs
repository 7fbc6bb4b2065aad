//! What every Facegate host binary does around its commands: parse the command line (usage errors
//! exit 2, `--help`/`--version` exit 0), run, and print an error chain once with exit code 2.

use std::process::ExitCode;

/// Parses `C` from the process arguments and runs it; `name` prefixes the error line.
pub fn main<C: clap::Parser>(name: &str, run: impl FnOnce(C) -> anyhow::Result<ExitCode>) -> ExitCode {
    let cli = match C::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(2) } else { ExitCode::SUCCESS };
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{name}: error: {}", facegate_shared::error_chain(&*e));
            ExitCode::from(2)
        }
    }
}
