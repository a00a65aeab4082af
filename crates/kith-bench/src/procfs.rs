//! What Linux says about a process: memory from `/proc/<pid>/status`, bytes written from
//! `/proc/<pid>/io` and CPU time from `/proc/<pid>/stat`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A reading of one process.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reading {
    /// Resident memory now, in KiB (`VmRSS`).
    pub rss_kib: u64,
    /// Peak resident memory since start, in KiB (`VmHWM`).
    pub hwm_kib: u64,
    /// Bytes the process caused to be sent to the storage layer (`write_bytes`): counted when a
    /// page is dirtied, so it needs no `sync`, and it is what reaches the disk, WAL and
    /// checkpoints included.
    pub write_bytes: u64,
    /// User plus system CPU time, in clock ticks (1/100 s on Linux).
    pub cpu_ticks: u64,
}

/// Reads a process; `None` once it has gone (or where `/proc` is not Linux's).
pub fn read(pid: u32) -> Option<Reading> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let field = |text: &str, name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim_start_matches(':').split_whitespace().next())
            .and_then(|value| value.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // Fields after the command name, which may itself hold spaces: utime and stime are the
    // 14th and 15th fields of the line, the 12th and 13th after the closing parenthesis.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let numbers: Vec<u64> = after_name.split_whitespace().map(|f| f.parse().unwrap_or(0)).collect();
    let cpu_ticks = numbers.get(11).copied().unwrap_or(0) + numbers.get(12).copied().unwrap_or(0);
    Some(Reading {
        rss_kib: field(&status, "VmRSS"),
        hwm_kib: field(&status, "VmHWM"),
        write_bytes: field(&io, "write_bytes"),
        cpu_ticks,
    })
}

/// Samples a process's resident memory every 50 ms until dropped, keeping the peak: `VmHWM`
/// is the peak since the process started, this is the peak of one phase.
pub struct PeakRss {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl PeakRss {
    /// Starts sampling `pid`.
    pub fn start(pid: u32) -> PeakRss {
        let peak = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (task_peak, task_stop) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !task_stop.load(Ordering::Relaxed) {
                if let Some(reading) = read(pid) {
                    task_peak.fetch_max(reading.rss_kib, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        PeakRss { peak, stop }
    }

    /// The peak so far, in KiB.
    pub fn peak_kib(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for PeakRss {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_process_can_be_read() {
        let reading = super::read(std::process::id()).expect("Linux /proc");
        assert!(reading.rss_kib > 0 && reading.hwm_kib >= reading.rss_kib);
    }
}
