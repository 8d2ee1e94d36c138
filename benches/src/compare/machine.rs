//! What the compare report says about where it ran: CPU model and cores,
//! RAM, kernel, the filesystem under the data root, both binaries'
//! versions, and the date (UTC, without a date crate). Read from /proc and
//! the binaries' `--version`; anything unreadable is reported as `?`, never
//! an error. Nothing here measures.

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub ram: String,
    pub kernel: String,
    /// `ext4 on /dev/vda (mounted at /)` for the data root.
    pub filesystem: String,
    pub etcd_version: String,
    pub setpoint_version: String,
}

/// Describes this machine, the filesystem of `data_root` and the binaries.
pub fn describe(data_root: &Path, etcd: &Path, setpoint: &Path) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "?".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let ram = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| format!("{:.1} GiB", kb / 1024.0 / 1024.0))
        .unwrap_or_else(|| "?".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into());
    Machine {
        cpu,
        cores,
        ram,
        kernel,
        filesystem: filesystem(data_root),
        etcd_version: version(etcd),
        setpoint_version: version(setpoint),
    }
}

/// The first line of `binary --version`.
pub fn version(binary: &Path) -> String {
    Command::new(binary)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                // etcd: "etcd Version: 3.4.23".
                .map(|l| {
                    l.trim()
                        .trim_start_matches("etcd Version:")
                        .trim()
                        .to_string()
                })
        })
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| "?".into())
}

/// The mount holding `path`, from /proc/mounts (the longest mount point
/// that is a prefix of it).
fn filesystem(path: &Path) -> String {
    let Ok(path) = path.canonicalize() else {
        return "?".into();
    };
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let mut best: Option<(usize, String)> = None;
    for line in mounts.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 3 {
            continue;
        }
        let point = f[1].replace("\\040", " ");
        if path.starts_with(&point) && best.as_ref().is_none_or(|(len, _)| point.len() >= *len) {
            best = Some((
                point.len(),
                format!("{} on {} (mounted at {point})", f[2], f[0]),
            ));
        }
    }
    best.map(|(_, s)| s).unwrap_or_else(|| "?".into())
}

/// Now as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn now_utc() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    utc(secs)
}

/// Seconds since the epoch as `YYYY-MM-DD HH:MM:SS UTC` (Howard Hinnant's
/// civil-from-days).
pub fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
    }
}
