//! `facegate`: the host command line. A thin layer over the library crates.

use clap::Parser;

/// Facegate host tools: train and export face encoders, enrol gym members, evaluate encoders,
/// and verify, identify, rank or search faces.
#[derive(Parser, Debug)]
#[command(name = "facegate", version, about, long_about = None)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
    eprintln!("facegate: no command given; run `facegate --help`");
    std::process::exit(2);
}
