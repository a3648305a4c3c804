// SPDX-License-Identifier: GPL-2.0
//! The result of one run: the JSON record (one object per line in `--json`), and its
//! human-readable table row.

use std::{fs::OpenOptions, io::Write, path::Path};

use serde::{Deserialize, Serialize};

use crate::options::Options;

/// One run's result. Every field has a default so that the report reads records written by
/// older or newer versions.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Record {
    pub(crate) server: String,
    pub(crate) scenario: String,
    /// `kchat`, `resp` or `irc`.
    pub(crate) protocol: String,
    pub(crate) clients: u64,
    pub(crate) senders: u64,
    pub(crate) stalled: u64,
    pub(crate) payload_bytes: u64,
    pub(crate) messages_per_sender: u64,
    pub(crate) window: u64,
    pub(crate) threads: u64,
    /// `--rate` (messages per second per sender), absent when self-clocked.
    pub(crate) rate: Option<f64>,
    /// `--rooms`, absent without rooms.
    pub(crate) rooms: Option<u64>,
    /// `--read-size`, absent by default (reads sized from the number of connections).
    pub(crate) read_size: Option<u64>,
    /// Recipients per message (kchat and IRC: connected clients of the sender's room - 1;
    /// RESP: subscribers of its channel), averaged over the senders and rounded.
    pub(crate) recipients: u64,
    /// Messages sent, and messages received by recipients (each copy counts).
    pub(crate) sent: u64,
    pub(crate) deliveries: u64,
    /// Deliveries per second over the measured interval.
    pub(crate) msgs_per_s: f64,
    /// Delivered payload megabytes (10^6) per second.
    pub(crate) mb_per_s: f64,
    pub(crate) p50_us: f64,
    pub(crate) p90_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) p999_us: f64,
    pub(crate) max_us: f64,
    pub(crate) mean_us: f64,
    /// With `--netns`: deliveries to, and latencies of, the clients in the first namespace
    /// (local to the senders) and in the others (remote nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) split: Option<Split>,
    pub(crate) lost: u64,
    pub(crate) duplicated: u64,
    pub(crate) reordered: u64,
    pub(crate) corrupted: u64,
    pub(crate) errors: u64,
    /// Seconds to connect every client, and to pass the barrier after that.
    pub(crate) connect_s: f64,
    pub(crate) barrier_s: f64,
    /// Length of the measured interval.
    pub(crate) elapsed_s: f64,
    /// The generator's own CPU time (user + system, all threads) in the interval.
    pub(crate) loadgen_cpu_s: f64,
    /// Busy CPU time of the whole machine in the interval (from /proc/stat).
    pub(crate) machine_busy_cpu_s: Option<f64>,
    /// Steal time in the interval (not counted as busy).
    pub(crate) steal_cpu_s: f64,
    /// (machine busy - generator) CPU time per delivery, microseconds.
    pub(crate) server_cpu_us_per_msg: Option<f64>,
    /// `--server-pid`: that process's own CPU time (user + system) in the interval, and per
    /// delivery in microseconds.
    pub(crate) server_process_cpu_s: Option<f64>,
    pub(crate) server_process_us_per_msg: Option<f64>,
    /// uname -r of the machine the run was on.
    pub(crate) kernel: String,
    /// Completed with nothing lost, duplicated, reordered or corrupted, and no error.
    pub(crate) ok: bool,
    pub(crate) aborted: bool,
    pub(crate) abort_reason: Option<String>,
    /// `--not-run`: the run did not happen, and why (its server is not installed, say). Such
    /// a record has the run's parameters and no results; it is not a failed run.
    pub(crate) not_run: Option<String>,
    /// Unix time the run ended.
    pub(crate) unix_time: u64,
}

impl Record {
    /// A record of a run with `o`, its results still empty: the parameters, the kernel and
    /// the time.
    pub(crate) fn for_run(o: &Options) -> Self {
        Record {
            server: o.server.clone(),
            scenario: o.scenario.clone(),
            protocol: o.protocol.name().into(),
            clients: o.clients as u64,
            senders: o.senders as u64,
            stalled: o.stalled as u64,
            payload_bytes: o.payload as u64,
            messages_per_sender: u64::from(o.messages),
            window: u64::from(o.window()),
            threads: o.threads as u64,
            rate: o.rate,
            rooms: o.rooms.map(|r| r as u64),
            read_size: o.read_size.map(|r| r as u64),
            kernel: kernel_release(),
            unix_time: std::time::SystemTime::now()
                .duration_since(std::time::SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            ..Record::default()
        }
    }

    /// The record of a run with `o` that could not start at all.
    pub(crate) fn failed(o: &Options, reason: String) -> Self {
        Record {
            errors: 1,
            aborted: true,
            abort_reason: Some(reason),
            ..Record::for_run(o)
        }
    }

    /// The record of a run with `o` that was not attempted, for `reason` (`--not-run`).
    pub(crate) fn not_run(o: &Options, reason: String) -> Self {
        Record {
            not_run: Some(reason),
            ..Record::for_run(o)
        }
    }

    /// Appends this record to `path` as one JSON line.
    pub(crate) fn append_json(&self, path: &Path) -> std::io::Result<()> {
        let mut line = serde_json::to_string(self).map_err(std::io::Error::other)?;
        line.push('\n');
        let mut f = OpenOptions::new().create(true).append(true).open(path)?;
        // One write call per record, so concurrent appenders do not interleave lines.
        f.write_all(line.as_bytes())
    }

    /// The header of [`Record::table_row`].
    pub(crate) fn table_header() -> String {
        format!(
            "{:<12} {:<16} {:>6} {:>5} {:>6} {:>11} {:>8} {:>9} {:>9} {:>9} {:>6} {:>4} {:>5} {:>5} {:>4} {:>8} {:>7}",
            "server", "scenario", "clnts", "sndrs", "bytes", "msgs/s", "MB/s", "p50_us",
            "p99_us", "max_us", "lost", "dup", "reord", "corr", "err", "srv_us/m", "gen_cpu",
        )
    }

    /// A one-line summary for humans.
    pub(crate) fn table_row(&self) -> String {
        let cpu = self
            .server_cpu_us_per_msg
            .map_or("-".to_string(), |v| format!("{v:.2}"));
        format!(
            "{:<12} {:<16} {:>6} {:>5} {:>6} {:>11.0} {:>8.2} {:>9.1} {:>9.1} {:>9.1} {:>6} {:>4} {:>5} {:>5} {:>4} {:>8} {:>6.2}s",
            self.server,
            self.scenario,
            self.clients,
            self.senders,
            self.payload_bytes,
            self.msgs_per_s,
            self.mb_per_s,
            self.p50_us,
            self.p99_us,
            self.max_us,
            self.lost,
            self.duplicated,
            self.reordered,
            self.corrupted,
            self.errors,
            cpu,
            self.loadgen_cpu_s,
        )
    }
}

/// The running kernel's release (`uname -r`).
pub(crate) fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks that a record survives JSON and that a record with missing fields (another
    /// version's) still reads.
    #[test]
    fn json_round_trip() {
        let r = Record {
            server: "kchat".into(),
            msgs_per_s: 1234.5,
            server_cpu_us_per_msg: Some(3.25),
            ..Record::default()
        };
        let text = serde_json::to_string(&r).unwrap();
        let back: Record = serde_json::from_str(&text).unwrap();
        assert_eq!(back.server, "kchat");
        assert_eq!(back.server_cpu_us_per_msg, Some(3.25));
        let old: Record = serde_json::from_str(r#"{"server":"x","msgs_per_s":5}"#).unwrap();
        assert_eq!(old.msgs_per_s, 5.0);
        assert_eq!(r.table_row().split_whitespace().next(), Some("kchat"));
    }
}

/// Latencies of a cluster run (`--netns`), local and remote apart.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub(crate) struct Split {
    pub(crate) local_deliveries: u64,
    pub(crate) local_p50_us: f64,
    pub(crate) local_p99_us: f64,
    pub(crate) remote_deliveries: u64,
    pub(crate) remote_p50_us: f64,
    pub(crate) remote_p99_us: f64,
}
