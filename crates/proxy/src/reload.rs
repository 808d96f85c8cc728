//! Hot reload: SIGHUP, a change of the config file on disk, or the admin `RELOAD` command.
//!
//! The whole new file is parsed and validated first; a bad file is rejected (logged, counted, reported to
//! the admin) and the running config stays untouched. A good one is swapped in atomically:
//! - sessions keep their backend connections until a safe point (outside a transaction), then follow the
//!   new topology; a removed replica gets no new reads at once and its idle pooled connections are closed;
//! - health state and pooled connections of unchanged backends are kept;
//! - new users can log in at once, removed users cannot start sessions (running ones go on);
//! - `listen`, `metrics.listen`, `admin.listen` and `workers` need a restart: a change is reported and
//!   ignored (for `admin.listen`, only the address: the admin account and password follow the new file).
//!
//! The watcher polls the file's content every 500 ms (a hash, not the mtime) and reloads when a change is
//! stable for one more poll. Polling the path, rather than an inotify watch on the file, survives editors
//! that save by renaming and Kubernetes' ConfigMap symlink swaps.

use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, ConfigError};
use crate::Shared;

/// How often the watcher reads the config file.
const POLL: Duration = Duration::from_millis(500);

/// What a successful reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// Settings that changed in the file but need a restart (their old values stay in force).
    pub restart_needed: Vec<&'static str>,
    /// Backends no longer configured.
    pub removed: Vec<String>,
    /// Backends newly configured.
    pub added: Vec<String>,
}

impl std::fmt::Display for ReloadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "reloaded")?;
        if !self.added.is_empty() {
            write!(f, "; added {}", self.added.join(", "))?;
        }
        if !self.removed.is_empty() {
            write!(f, "; removed {}", self.removed.join(", "))?;
        }
        if !self.restart_needed.is_empty() {
            write!(f, "; needs a restart to change: {}", self.restart_needed.join(", "))?;
        }
        Ok(())
    }
}

fn backends(c: &Config) -> Vec<String> {
    std::iter::once(c.master.address.clone()).chain(c.replicas.iter().map(|r| r.address.clone())).collect()
}

/// Re-reads and validates the file the running config came from, and applies it if it is good.
pub fn reload_from_file(shared: &Arc<Shared>) -> Result<ReloadReport, ConfigError> {
    let current = shared.config.load_full();
    let Some(path) = current.source.clone() else {
        return Err(ConfigError {
            origin: "(no file)".into(),
            problems: vec![crate::config::Problem {
                field: "(file)".into(),
                message: "the running config did not come from a file".into(),
            }],
        });
    };
    match Config::load(&path) {
        Ok(new) => Ok(apply(shared, new)),
        Err(e) => {
            tracing::error!("config reload rejected, keeping the running config: {e}");
            shared.metrics.reload(false);
            Err(e)
        }
    }
}

/// Swaps in a validated config.
pub fn apply(shared: &Arc<Shared>, mut new: Config) -> ReloadReport {
    let old = shared.config.load_full();
    let mut report = ReloadReport::default();
    if new.listen != old.listen {
        report.restart_needed.push("listen");
        new.listen = old.listen;
    }
    if new.metrics.as_ref().map(|m| m.listen) != old.metrics.as_ref().map(|m| m.listen) {
        report.restart_needed.push("metrics.listen");
        new.metrics = old.metrics.clone();
    }
    let admin_listen = |c: &Config| c.admin.as_ref().map(|a| a.listen);
    if admin_listen(&new) != admin_listen(&old) {
        report.restart_needed.push("admin.listen");
        // Only the listener stays as it was: the account and password follow the new file.
        match (&mut new.admin, &old.admin) {
            (Some(a), Some(o)) => a.listen = o.listen,
            (new_admin, old_admin) => *new_admin = old_admin.clone(),
        }
    }
    if new.workers != old.workers {
        report.restart_needed.push("workers");
        new.workers = old.workers;
    }
    let (before, after) = (backends(&old), backends(&new));
    report.removed = before.iter().filter(|b| !after.contains(b)).cloned().collect();
    report.added = after.iter().filter(|b| !before.contains(b)).cloned().collect();
    let topology = crate::topology::Topology::new(&new);
    shared.config.store(Arc::new(new));
    shared.topology.store(Arc::new(topology));
    for addr in &report.removed {
        for pool in &shared.pools {
            pool.drop_backend(addr);
        }
    }
    crate::health::start(shared);
    shared.metrics.reload(true);
    tracing::info!("{report}");
    report
}

fn content_hash(path: &Path) -> Option<u64> {
    let bytes = std::fs::read(path).ok()?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    Some(h.finish())
}

/// Watches the config file and reloads when its content changes (debounced by one poll).
pub fn spawn_watcher(shared: &Arc<Shared>) {
    let Some(path) = shared.config.load().source.clone() else { return };
    let shared = Arc::clone(shared);
    let cancel = shared.root().clone();
    tokio::spawn(async move {
        let mut applied = content_hash(&path);
        let mut pending: Option<u64> = None;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = cancel.cancelled() => return,
            }
            let now = content_hash(&path);
            if now == applied {
                pending = None;
                continue;
            }
            if pending != now {
                // Changed since the last look: wait one more poll for the writer to finish.
                pending = now;
                continue;
            }
            pending = None;
            applied = now;
            tracing::info!(file = %path.display(), "config file changed; reloading");
            let _ = reload_from_file(&shared);
        }
    });
}
