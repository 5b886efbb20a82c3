//! `siltd`: the Silt broker. Parses flags (over `SILT_*` env over the TOML file), starts the
//! broker, and on SIGTERM or SIGINT drains requests, closes every log cleanly and exits 0.
//!
//! A library with one entry point, [`main`], so the fault-test harness (`tests/`) can build the
//! same broker as a binary of its own package.

mod options;

use clap::Parser;
use silt_broker::Broker;
use tracing_subscriber::EnvFilter;

/// The whole `siltd` process: flags, logging, runtime, serve until a signal.
pub fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in files and log collectors.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let options = options::Options::parse();
    let config = match options.config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(config: silt_broker::BrokerConfig) -> anyhow::Result<()> {
    let broker = Broker::bind(config).await?;
    eprintln!("siltd listening on {}", broker.local_addr());
    let tls: Vec<_> = broker.tls().into_iter().chain(broker.internal_tls()).collect();
    if !tls.is_empty() {
        tokio::spawn(reload_tls_on_sighup(tls));
    }
    broker.run(shutdown_signal()).await?;
    Ok(())
}

/// Reads the TLS certificate, key and client CA (and the internal listener's cluster CA) again
/// on every SIGHUP; new connections use them, open ones keep theirs, and a failed reload keeps
/// the old ones. (This broker's own calls to its peers keep the files read at start.)
async fn reload_tls_on_sighup(tls: Vec<std::sync::Arc<silt_broker::tls::ServerTls>>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGHUP: TLS certificates will not reload");
            return;
        }
    };
    while hup.recv().await.is_some() {
        for t in &tls {
            match t.reload() {
                Ok(()) => tracing::info!("SIGHUP: TLS certificates reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "SIGHUP: TLS reload failed; serving the previous certificates")
                }
            }
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
    }
}
