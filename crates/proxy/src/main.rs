//! The `rwsplit` binary: parses the command line, sets up logging and signals, and calls [`rwsplit::run`].
//!
//! Signals: SIGINT and SIGTERM stop accepting connections and give sessions `shutdown_grace` to finish.

use std::path::PathBuf;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

const USAGE: &str = "usage: rwsplit [--config FILE] [--check] [--log-format text|json]

  --config FILE        configuration file (default: proxy.yaml)
  --check              validate the configuration, print every problem, and exit
  --log-format FORMAT  text (default) or json; also RWSPLIT_LOG_FORMAT
  RUST_LOG             log filter, e.g. info, rwsplit=debug (default: info)

signals: SIGHUP reloads the configuration file (a bad file is rejected and the running configuration
kept); SIGTERM and SIGINT stop accepting connections and give sessions shutdown_grace to finish.";

struct Args {
    config: PathBuf,
    check: bool,
    json_logs: bool,
}

fn parse_args() -> anyhow::Result<Args> {
    let env_json = std::env::var("RWSPLIT_LOG_FORMAT").is_ok_and(|v| v == "json");
    let mut args = Args { config: PathBuf::from("proxy.yaml"), check: false, json_logs: env_json };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--config" | "-c" => args.config = it.next().context("--config needs a file name")?.into(),
            "--check" => args.check = true,
            "--log-format" => {
                args.json_logs = match it.next().as_deref() {
                    Some("json") => true,
                    Some("text") => false,
                    other => anyhow::bail!("--log-format takes text or json, not {other:?}"),
                }
            }
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
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    // Logs go to stderr; stdout is left to --check and --help output.
    if args.json_logs {
        tracing_subscriber::fmt().json().with_writer(std::io::stderr).with_env_filter(filter).init();
    } else {
        tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter).init();
    }
    // Thread per core: `workers` single-threaded event loops, each with a listener of its own on the same
    // address (SO_REUSEPORT, the kernel spreads new connections) and a pool of its own; a session stays on
    // the loop that accepted it, so nothing on the data path crosses threads. Loop 0 runs on this thread with
    // the background tasks (the health checker has a thread of its own).
    let workers = config.workers.max(1);
    let listen = config.listen;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let shared = rwsplit::Shared::new(config);
    let shutdown = CancellationToken::new();
    let mut threads = Vec::new();
    for worker in 1..workers {
        let (shared, shutdown) = (std::sync::Arc::clone(&shared), shutdown.clone());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new().name(format!("rwsplit-loop-{worker}")).spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(r) => r,
                Err(e) => return ready_tx.send(Err(anyhow::Error::from(e))).unwrap_or(()),
            };
            runtime.block_on(async move {
                match bind(listen, true) {
                    Ok(listener) => {
                        let _ = ready_tx.send(Ok(()));
                        rwsplit::serve_loop(shared, listener, shutdown, worker).await;
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })
        })?;
        ready_rx.recv().context("an event loop thread died at start")??;
        threads.push(thread);
    }
    let result = runtime.block_on(async move {
        let listener = bind(listen, workers > 1)?;
        tokio::spawn(stop_on_signal(shutdown.clone()));
        tokio::spawn(reload_on_sighup(std::sync::Arc::clone(&shared)));
        rwsplit::serve(shared, listener, shutdown).await.context("proxy failed")
    });
    for thread in threads {
        let _ = thread.join();
    }
    result
}

/// The client listener on `addr`; with `reuse_port`, one of several on the same address (one per loop).
/// Must run inside a runtime.
fn bind(addr: std::net::SocketAddr, reuse_port: bool) -> anyhow::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    if reuse_port {
        socket.set_reuseport(true)?;
    }
    socket.bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    socket.listen(1024).with_context(|| format!("cannot listen on {addr}"))
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

/// SIGHUP: re-read and validate the config file; a bad file is logged and counted, the old config stays.
async fn reload_on_sighup(shared: std::sync::Arc<rwsplit::Shared>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::error!("cannot install the SIGHUP handler");
        return;
    };
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading the configuration");
        let _ = rwsplit::reload::reload_from_file(&shared);
    }
}
