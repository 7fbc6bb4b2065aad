//! `facegate-door`: the door unit binary.

use clap::Parser;

/// Facegate door unit: watches the camera, recognises enrolled members and opens the lock.
/// The door stays locked on any failure.
#[derive(Parser, Debug)]
#[command(name = "facegate-door", version, about, long_about = None)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
    eprintln!("facegate-door: no command given; run `facegate-door --help`");
    std::process::exit(2);
}
