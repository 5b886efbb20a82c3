//! `silt`: the command-line client (CLI.md). Exit codes: 0 success, 1 the operation failed,
//! 2 usage error. Errors are one line on stderr: `error: <what> (<code>)`.

#[macro_use]
mod output;

mod args;
mod bench;
mod bench_group;
mod cluster;
mod consume;
mod dev;
mod error;
mod group;
mod produce;
mod record_json;
mod time;
mod topic;

use clap::Parser;

use crate::args::{BenchCmd, Cli, Command};
use crate::error::CliError;

fn main() -> std::process::ExitCode {
    // Diagnostics only when asked for (`RUST_LOG=silt_client=debug`, or `RUST_LOG=info` for the
    // brokers of `silt dev`): stderr stays the one error line scripts read.
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            return CliError::failed(format!("cannot start the runtime: {e}"), "RUNTIME").report();
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => e.report(),
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    if let Command::Dev(a) = cli.command {
        return dev::run(a, cli.output).await;
    }
    let bootstrap: Vec<String> =
        cli.bootstrap.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    if bootstrap.is_empty() {
        return Err(CliError::usage("--bootstrap names no broker"));
    }
    for b in &bootstrap {
        if !b
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
        {
            return Err(CliError::usage(format!(
                "--bootstrap {b:?} is not HOST:PORT (the port is needed, e.g. {b}:9300)"
            )));
        }
    }
    let within = std::time::Duration::from_millis(cli.connect_timeout_ms);
    let client = silt_client::Client::connect_within(&bootstrap, within).await?;
    let out = cli.output;
    match cli.command {
        Command::Cluster(cmd) => cluster::run(&client, cmd, out).await,
        Command::Topic(cmd) => topic::run(&client, cmd, out).await,
        Command::Produce(a) => produce::run(&client, a).await,
        Command::Consume(a) => consume::run(&client, a, out).await,
        Command::Group(cmd) => group::run(&client, cmd, out).await,
        Command::Bench(BenchCmd::Produce(a)) => bench::produce(&client, a, out).await,
        Command::Bench(BenchCmd::Consume(a)) => bench::consume(&client, a, out).await,
        Command::Bench(BenchCmd::Rebalance(a)) => bench_group::rebalance(&client, a, out).await,
        Command::Bench(BenchCmd::Commit(a)) => bench_group::commit(&client, a, out).await,
        Command::Dev(_) => unreachable!("handled before connecting"),
    }
}

/// Milliseconds since the Unix epoch (bench group names).
fn bench_group_now_ms() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis())
}
