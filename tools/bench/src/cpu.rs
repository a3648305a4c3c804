// SPDX-License-Identifier: GPL-2.0
//! CPU accounting over the measured interval: the machine's busy time from /proc/stat and the
//! generator's own time from getrusage; their difference is charged to the server. With
//! `--server-pid`, also the server process's own time from /proc/PID/stat.

use std::{fs, io};

use crate::sys;

/// The first (`cpu`) line of /proc/stat, in clock ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ProcStat {
    /// user + nice + system + irq + softirq: time some CPU spent doing work.
    pub(crate) busy: u64,
    /// idle + iowait.
    pub(crate) idle: u64,
    /// Time the hypervisor ran something else while this guest wanted a CPU.
    pub(crate) steal: u64,
}

/// Parses the `cpu` line of /proc/stat.
///
/// Fields are `user nice system idle iowait irq softirq steal guest guest_nice`; older kernels
/// print fewer. `guest` and `guest_nice` are already included in `user` and `nice` (proc(5)),
/// so they are not added again; `steal` is kept apart because it is not this guest's work.
pub(crate) fn parse_proc_stat(text: &str) -> Option<ProcStat> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let mut f = [0u64; 8];
    let mut n = 0;
    for (slot, word) in f.iter_mut().zip(line.split_ascii_whitespace().skip(1)) {
        *slot = word.parse().ok()?;
        n += 1;
    }
    if n < 4 {
        return None;
    }
    let [user, nice, system, idle, iowait, irq, softirq, steal] = f;
    Some(ProcStat {
        busy: user + nice + system + irq + softirq,
        idle: idle + iowait,
        steal,
    })
}

/// User plus system time, in clock ticks, from the text of /proc/PID/stat: fields 14 and 15,
/// counted after the command name (which is in parentheses and may hold anything).
pub(crate) fn parse_pid_stat(text: &str) -> Option<u64> {
    let (_, rest) = text.rsplit_once(')')?;
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Reads /proc/stat now.
pub(crate) fn read_proc_stat() -> io::Result<ProcStat> {
    let text = fs::read_to_string("/proc/stat")?;
    parse_proc_stat(&text)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no cpu line in /proc/stat"))
}

/// One reading of the clocks, taken at the start or the end of the measured interval.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuSample {
    /// Machine-wide busy time, or `None` where /proc/stat cannot be read.
    stat: Option<ProcStat>,
    /// This process's user + system time, seconds.
    own_s: f64,
    /// The server process's user + system time, in clock ticks, if asked for and readable.
    server_ticks: Option<u64>,
}

impl CpuSample {
    /// Reads them now (the server process's too, if `server_pid` is given).
    pub(crate) fn take(server_pid: Option<u32>) -> Self {
        let server =
            server_pid.and_then(|pid| fs::read_to_string(format!("/proc/{pid}/stat")).ok());
        Self {
            stat: read_proc_stat().ok(),
            own_s: sys::process_cpu_seconds(),
            server_ticks: server.as_deref().and_then(parse_pid_stat),
        }
    }
}

/// CPU used between two samples.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CpuUse {
    /// The generator's own CPU time (all its threads), seconds.
    pub(crate) loadgen_s: f64,
    /// Busy time of the whole machine (all CPUs), seconds; `None` without /proc/stat.
    pub(crate) busy_s: Option<f64>,
    /// Steal time of the whole machine, seconds.
    pub(crate) steal_s: f64,
    /// The server process's own user + system time, seconds (`--server-pid`).
    pub(crate) server_process_s: Option<f64>,
}

impl CpuUse {
    /// The CPU used from `start` to `end`.
    pub(crate) fn between(start: &CpuSample, end: &CpuSample) -> Self {
        let hz = sys::clock_ticks_per_second() as f64;
        let (busy_s, steal_s) = match (start.stat, end.stat) {
            (Some(a), Some(b)) => (
                Some(b.busy.saturating_sub(a.busy) as f64 / hz),
                b.steal.saturating_sub(a.steal) as f64 / hz,
            ),
            _ => (None, 0.0),
        };
        let server_process_s = match (start.server_ticks, end.server_ticks) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / hz),
            _ => None,
        };
        Self {
            loadgen_s: (end.own_s - start.own_s).max(0.0),
            busy_s,
            steal_s,
            server_process_s,
        }
    }

    /// CPU time charged to the server: machine busy time minus the generator's own, seconds.
    pub(crate) fn server_s(&self) -> Option<f64> {
        self.busy_s.map(|b| (b - self.loadgen_s).max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks the /proc/stat parser:
    /// - busy is user+nice+system+irq+softirq, idle is idle+iowait, steal apart, guest ignored;
    /// - a short line from an old kernel still parses;
    /// - only the aggregate `cpu ` line is used, not `cpu0`;
    /// - garbage gives `None`.
    #[test]
    fn proc_stat() {
        let text = "cpu  100 2 30 4000 50 6 7 8 9 10\ncpu0 1 1 1 1 1 1 1 1 1 1\nintr 5\n";
        assert_eq!(
            parse_proc_stat(text),
            Some(ProcStat {
                busy: 100 + 2 + 30 + 6 + 7,
                idle: 4000 + 50,
                steal: 8
            })
        );
        assert_eq!(
            parse_proc_stat("cpu 1 2 3 4\n"),
            Some(ProcStat {
                busy: 6,
                idle: 4,
                steal: 0
            })
        );
        assert_eq!(parse_proc_stat("cpu0 1 2 3 4 5\n"), None);
        assert_eq!(parse_proc_stat("cpu 1 x 3 4\n"), None);
        assert_eq!(parse_proc_stat(""), None);
    }

    /// Checks the /proc/PID/stat parser: user + system ticks, also with a command name
    /// holding spaces and parentheses; `None` for a truncated line.
    #[test]
    fn pid_stat() {
        let fields = "S 1 2 3 0 -1 4194560 100 0 0 0 700 45 0 0 20 0 1 0 5 6 7";
        assert_eq!(parse_pid_stat(&format!("42 (ngircd) {fields}")), Some(745));
        assert_eq!(parse_pid_stat(&format!("42 (a) (b c) {fields}")), Some(745));
        assert_eq!(parse_pid_stat("42 (x) S 1 2 3"), None);
    }

    /// Checks that server time is busy time minus our own and never negative.
    #[test]
    fn server_share() {
        let u = CpuUse {
            loadgen_s: 1.5,
            busy_s: Some(4.0),
            ..CpuUse::default()
        };
        assert_eq!(u.server_s(), Some(2.5));
        let u = CpuUse {
            loadgen_s: 5.0,
            busy_s: Some(4.0),
            ..CpuUse::default()
        };
        assert_eq!(u.server_s(), Some(0.0));
        assert_eq!(CpuUse::default().server_s(), None);
    }
}
