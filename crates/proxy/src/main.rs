//! The `rwsplit` binary: parses the command line, sets up logging and signals, and calls [`rwsplit::run`].
//!
//! Signals: SIGINT and SIGTERM stop accepting connections and give sessions `shutdown_grace` to finish.

use std::path::PathBuf;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

const USAGE: &str = "usage: rwsplit [--config FILE] [--check]

  --config FILE   configuration file (default: proxy.yaml)
  --check         validate the configuration, print every problem, and exit
  RUST_LOG        log filter, e.g. info, rwsplit=debug (default: info)";

struct Args {
    config: PathBuf,
    check: bool,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args { config: PathBuf::from("proxy.yaml"), check: false };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--config" | "-c" => args.config = it.next().context("--config needs a file name")?.into(),
            "--check" => args.check = true,
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            "--version" | "-V" => {
                println!("rwsplit {}", env!("CARGO_PKG_VERSION"));
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown argument '{other}'\n\n{USAGE}"),
        }
    }
    Ok(args)
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let config = match rwsplit::Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    if args.check {
        println!("{}: OK", args.config.display());
        return Ok(());
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let shutdown = CancellationToken::new();
        tokio::spawn(stop_on_signal(shutdown.clone()));
        rwsplit::run(config, listener, shutdown).await.context("proxy failed")
    })
}

async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("shutting down");
    shutdown.cancel();
}
