//! What Linux's `/proc` says about a process on this machine: CPU time
//! (user + system, from `/proc/<pid>/stat`), resident memory (`VmRSS` from
//! `/proc/<pid>/status`), our own open-files limit, and the whole machine's
//! busy CPU time (`/proc/stat`). Read-only.

use std::time::Duration;

/// Clock ticks per second of `/proc/<pid>/stat` times. 100 on every Linux
/// platform we run on (`getconf CLK_TCK`); reading it properly would need libc.
const CLK_TCK: u64 = 100;

/// `utime + stime` from the contents of `/proc/<pid>/stat`, in ticks.
fn parse_stat_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may contain spaces:
    // count fields from the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// CPU time (user + system) used so far by `pid` (`None`: our own process).
pub fn cpu_time(pid: Option<u32>) -> Result<Duration, String> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let stat = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let ticks = parse_stat_ticks(&stat).ok_or_else(|| format!("{path}: unexpected format"))?;
    Ok(Duration::from_millis(ticks * 1000 / CLK_TCK))
}

/// Busy ticks (everything but idle and iowait) of all CPUs, from the first
/// line of `/proc/stat`.
fn parse_machine_busy_ticks(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal …
    if v.len() < 8 {
        return None;
    }
    Some(v[0] + v[1] + v[2] + v[5] + v[6] + v[7])
}

/// CPU time all processes of the machine used so far (to tell how much of
/// it went to other programs during a benchmark).
pub fn machine_busy_time() -> Result<Duration, String> {
    let stat = std::fs::read_to_string("/proc/stat").map_err(|e| format!("/proc/stat: {e}"))?;
    let ticks = parse_machine_busy_ticks(&stat).ok_or("/proc/stat: unexpected format")?;
    Ok(Duration::from_millis(ticks * 1000 / CLK_TCK))
}

/// `VmRSS` in KiB from the contents of `/proc/<pid>/status`.
fn parse_status_rss_kb(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Resident set size of `pid`, in KiB.
pub fn rss_kb(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    parse_status_rss_kb(&status).ok_or_else(|| format!("{path}: no VmRSS line"))
}

/// Soft "Max open files" limit of this process, if readable.
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..].split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_and_status() {
        let stat = "4242 (parsec server) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 3 0 100 0 0";
        assert_eq!(parse_stat_ticks(stat), Some(325));
        assert_eq!(parse_stat_ticks("garbage"), None);
        let status = "Name:\tparsec-server\nVmPeak:\t  20000 kB\nVmRSS:\t   12345 kB\nThreads:\t3\n";
        assert_eq!(parse_status_rss_kb(status), Some(12345));
        assert_eq!(parse_status_rss_kb("Name: x\n"), None);
        let stat = "cpu  100 5 50 9000 40 3 2 1 0 0\ncpu0 50 2 25 4500 20 1 1 0 0 0\n";
        assert_eq!(parse_machine_busy_ticks(stat), Some(161));
        assert_eq!(parse_machine_busy_ticks("cpu 1 2\n"), None);
        assert!(machine_busy_time().is_ok());
        // Our own process is always readable on Linux.
        assert!(cpu_time(None).is_ok());
        assert!(rss_kb(std::process::id()).unwrap() > 0);
        assert!(open_files_limit().unwrap() > 0);
    }
}
