//! Settings shared by the end-to-end load clients (`churn`, `idle`): environment variables and connection
//! options. These binaries are driven by `benches/e2e/run.sh`; run alone without their address variable they
//! print how to use them and exit 0, so a plain `cargo bench` does not fail on them.

use std::time::Duration;

/// Reads `name` from the environment, or `default` if it is unset.
pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// Reads and parses `name`, or returns `default`; a value that does not parse is an error.
pub fn env_parse<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
    match std::env::var(name) {
        Ok(v) => v.parse().map_err(|_| anyhow::anyhow!("{name}={v:?} is not a valid value")),
        Err(_) => Ok(default),
    }
}

/// Connection options for `addr` (`host:port`) that make `Conn::new` do the handshake and login only: the
/// settings mysql_async would otherwise query after login are given up front, and no socket is looked up.
pub fn opts(addr: &str, user: &str, password: &str, db: Option<String>) -> anyhow::Result<mysql_async::Opts> {
    let (host, port) = addr.rsplit_once(':').ok_or_else(|| anyhow::anyhow!("address {addr:?} needs host:port"))?;
    let port: u16 = port.parse().map_err(|_| anyhow::anyhow!("bad port in {addr:?}"))?;
    Ok(mysql_async::OptsBuilder::default()
        .ip_or_hostname(host)
        .tcp_port(port)
        .user(Some(user))
        .pass(Some(password))
        .db_name(db)
        .prefer_socket(false)
        .max_allowed_packet(Some(16 << 20))
        .wait_timeout(Some(28_800))
        .stmt_cache_size(0)
        .into())
}

/// Seconds as a `Duration`, from a float.
pub fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}
