//! The `mulki` binary: parses arguments, dispatches, maps errors to exit codes (0 success,
//! 1 runtime failure, 2 usage (clap), 3 invalid input data or config).
use clap::Parser;
use mulki_host::cli::{BenchCommand, Cli, Command, DataCommand};
use mulki_host::commands;

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(args) => commands::train::run(&args),
        Command::Demo(args) => commands::demo::run(&args).map(|()| 0),
        Command::Pretrain(args) => commands::pretrain::run(&args).map(|()| 0),
        Command::Eval(args) => commands::eval::run(&args, false).map(|()| 0),
        Command::ZeroShot(args) => commands::eval::run(&args, true).map(|()| 0),
        Command::Config(args) => commands::config::run(&args).map(|()| 0),
        Command::Report(args) => commands::report::run(&args).map(|()| 0),
        Command::Inspect(args) => commands::inspect::run(&args).map(|()| 0),
        Command::Data(DataCommand::Check(args)) => commands::data::check(&args).map(|()| 0),
        Command::Embed(args) => commands::embed::run(&args).map(|()| 0),
        Command::Bench(BenchCommand::Cpu(args)) => commands::bench::run_cpu(&args).map(|()| 0),
        Command::Bench(BenchCommand::Step(args)) => commands::bench_step::run(&args).map(|()| 0),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            eprintln!("error: {}", commands::describe(&err));
            std::process::exit(commands::exit_code(&err));
        }
    }
}
