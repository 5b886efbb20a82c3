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
mod dev_pki;
mod error;
mod group;
mod payload;
mod produce;
mod profile;
mod reassign;
mod record_json;
mod rpc;
mod security;
mod share;
mod time;
mod topic;
mod txn;

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

/// The default `--bootstrap`.
const DEFAULT_BOOTSTRAP: &str = "127.0.0.1:9300";

/// Connection settings: the command line's flags over the profile's.
#[derive(Debug)]
struct Settings {
    bootstrap: String,
    tls_ca: Option<std::path::PathBuf>,
    tls_cert: Option<std::path::PathBuf>,
    tls_key: Option<std::path::PathBuf>,
    user: Option<String>,
}

fn settings(cli: &Cli) -> Result<Settings, CliError> {
    let p = profile::load(profile::path().as_deref(), cli.profile.as_deref())?;
    // A certificate and its key come as a pair: a flag for either replaces both.
    let (tls_cert, tls_key) = if cli.tls_cert.is_some() || cli.tls_key.is_some() {
        (cli.tls_cert.clone(), cli.tls_key.clone())
    } else {
        (p.tls_cert, p.tls_key)
    };
    Ok(Settings {
        bootstrap: cli.bootstrap.clone().or(p.bootstrap).unwrap_or(DEFAULT_BOOTSTRAP.into()),
        tls_ca: cli.tls_ca.clone().or(p.tls_ca),
        tls_cert,
        tls_key,
        user: cli.user.clone().or(p.user),
    })
}

/// TLS settings from `--tls-ca`, `--tls-cert`, `--tls-key` (a client certificate without a CA
/// is a usage error: TLS needs the CA to trust the brokers).
fn tls_options(s: &Settings) -> Result<Option<silt_client::TlsOptions>, CliError> {
    let read = |flag: &str, p: &std::path::Path| {
        std::fs::read(p).map_err(|e| CliError::usage(format!("{flag} {}: {e}", p.display())))
    };
    let Some(ca) = &s.tls_ca else {
        if s.tls_cert.is_some() {
            return Err(CliError::usage("--tls-cert needs --tls-ca (the CA of the brokers)"));
        }
        return Ok(None);
    };
    let identity = match (&s.tls_cert, &s.tls_key) {
        (Some(c), Some(k)) => Some((read("--tls-cert", c)?, read("--tls-key", k)?)),
        (None, None) => None,
        _ => return Err(CliError::usage("--tls-cert and --tls-key go together")),
    };
    Ok(Some(silt_client::TlsOptions { ca_pem: read("--tls-ca", ca)?, identity }))
}

/// The login of `--user`: the password from SILT_PASSWORD, else a prompt.
fn credentials(s: &Settings) -> Result<Option<silt_client::Credentials>, CliError> {
    let Some(user) = &s.user else { return Ok(None) };
    if s.tls_ca.is_none() {
        return Err(CliError::usage(
            "--user needs TLS (--tls-ca): a password is never sent in clear",
        ));
    }
    let password = match std::env::var("SILT_PASSWORD") {
        Ok(p) if !p.is_empty() => p,
        _ => security::prompt_password(&format!("password for {user}: "))?,
    };
    Ok(Some(silt_client::Credentials { user: user.clone(), password }))
}

async fn run(cli: Cli) -> Result<(), CliError> {
    if let Command::Dev(a) = cli.command {
        return dev::run(a, cli.output).await;
    }
    let settings = settings(&cli)?;
    let bootstrap: Vec<String> = settings
        .bootstrap
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
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
    let tls = tls_options(&settings)?;
    let credentials = credentials(&settings)?;
    let logged_in = credentials.is_some();
    let options = silt_client::ConnectOptions { within, tls, credentials, ..Default::default() };
    let client = match silt_client::Client::connect_with(&bootstrap, options).await {
        Ok(c) => c,
        Err(e) => {
            let mut err = CliError::from(e);
            if settings.tls_ca.is_none() && err.code == "BROKER_NOT_AVAILABLE" {
                err.what.push_str(
                    "; if the brokers use TLS, pass --tls-ca (and --tls-cert/--tls-key for mTLS)",
                );
            }
            return Err(err);
        }
    };
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
        Command::User(cmd) => security::user(&client, cmd, out, logged_in).await,
        Command::Acl(cmd) => security::acl(&client, cmd, out).await,
        Command::Txn(cmd) => txn::run(&client, cmd, out).await,
        Command::ShareGroup(cmd) => share::run(&client, cmd, out).await,
        Command::Rpc(cmd) => rpc::run(&client, cmd, out).await,
        Command::Partition(cmd) => reassign::partition(&client, cmd, out).await,
        Command::Broker(cmd) => reassign::broker(&client, cmd, out).await,
        Command::Dev(_) => unreachable!("handled before connecting"),
    }
}

/// Milliseconds since the Unix epoch (bench group names).
fn bench_group_now_ms() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis())
}
