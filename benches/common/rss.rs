//! Resident memory of a process, for the load clients that measure the proxy's (`idle`, `load`).

/// VmRSS of `pid` in bytes, from `/proc/PID/status`.
pub fn rss(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).ok_or_else(|| anyhow::anyhow!("no VmRSS"))?;
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("bad VmRSS line {line:?}"))?;
    Ok(kb * 1024)
}
