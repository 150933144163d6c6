//! The `mulki` binary: parses arguments, dispatches, maps errors to exit codes (0 success,
//! 1 runtime failure, 2 usage (clap), 3 invalid input data or config).
use clap::Parser;
use mulki_host::cli::{BenchCommand, Cli, Command};
use mulki_host::commands;

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Embed(args) => commands::embed::run(&args),
        Command::Bench(BenchCommand::Cpu(args)) => commands::bench::run_cpu(&args),
    };
    if let Err(err) = result {
        eprintln!("error: {}", commands::describe(&err));
        std::process::exit(commands::exit_code(&err));
    }
}
