// SPDX-License-Identifier: GPL-2.0
//! `kchat-bench report`: reads JSON records and writes a markdown comparison (one table per
//! scenario and a kchat-versus-best-reference summary) and an SVG chart.
//!
//! The server named exactly `kchat` is kchat; every other server is a reference. When a
//! server ran a scenario several times, each metric is the median over its runs.

use std::{fmt::Write as _, fs, path::Path};

use crate::{chart, options::ReportOptions, record::Record};

/// The server name that means kchat itself.
pub(crate) const KCHAT: &str = "kchat";

/// One server's results in one scenario (medians over its runs).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Cell {
    pub(crate) server: String,
    pub(crate) runs: usize,
    /// Runs that were not `ok`.
    pub(crate) failed: usize,
    pub(crate) msgs_per_s: f64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) cpu_us_per_msg: Option<f64>,
    /// Lost + duplicated + reordered + corrupted, summed over runs.
    pub(crate) bad: u64,
}

/// One scenario: its parameters (from its first record) and a cell per server.
#[derive(Debug, Clone)]
pub(crate) struct Scenario {
    pub(crate) name: String,
    pub(crate) first: Record,
    pub(crate) cells: Vec<Cell>,
}

/// Reads records: one JSON object per line, or one JSON array.
pub(crate) fn load(path: &Path) -> Result<Vec<Record>, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if text.trim_start().starts_with('[') {
        return serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()));
    }
    let lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    lines
        .map(|(n, l)| {
            serde_json::from_str(l).map_err(|e| format!("{}:{}: {e}", path.display(), n + 1))
        })
        .collect()
}

/// The median of `v` (0 for none).
fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// Summarises one server's runs of one scenario: medians over the runs that succeeded (over
/// all of them if none did), counts over all.
fn cell(server: &str, runs: &[&Record]) -> Cell {
    let good: Vec<&Record> = runs.iter().copied().filter(|r| r.ok).collect();
    let base = if good.is_empty() { runs } else { &good[..] };
    let med = |f: fn(&Record) -> f64| median(base.iter().map(|r| f(r)).collect());
    let cpu: Vec<f64> = base
        .iter()
        .filter_map(|r| r.server_cpu_us_per_msg)
        .collect();
    Cell {
        server: server.to_string(),
        runs: runs.len(),
        failed: runs.iter().filter(|r| !r.ok).count(),
        msgs_per_s: med(|r| r.msgs_per_s),
        p50_us: med(|r| r.p50_us),
        p99_us: med(|r| r.p99_us),
        cpu_us_per_msg: (!cpu.is_empty()).then(|| median(cpu)),
        bad: runs
            .iter()
            .map(|r| r.lost + r.duplicated + r.reordered + r.corrupted)
            .sum(),
    }
}

/// Groups records by scenario, then server, both in order of first appearance.
pub(crate) fn group(records: &[Record]) -> Vec<Scenario> {
    let mut names: Vec<&str> = Vec::new();
    for r in records {
        if !names.contains(&r.scenario.as_str()) {
            names.push(&r.scenario);
        }
    }
    names
        .into_iter()
        .map(|name| {
            let rs: Vec<&Record> = records.iter().filter(|r| r.scenario == name).collect();
            let mut servers: Vec<&str> = Vec::new();
            for r in &rs {
                if !servers.contains(&r.server.as_str()) {
                    servers.push(&r.server);
                }
            }
            let cells = servers
                .iter()
                .map(|&s| {
                    let runs: Vec<&Record> = rs.iter().copied().filter(|r| r.server == s).collect();
                    cell(s, &runs)
                })
                .collect();
            Scenario {
                name: name.to_string(),
                first: rs[0].clone(),
                cells,
            }
        })
        .collect()
}

/// kchat's cell and the best reference cell for one metric (`higher` = bigger is better).
fn versus(
    sc: &Scenario,
    metric: impl Fn(&Cell) -> Option<f64>,
    higher: bool,
) -> Option<(f64, &str, f64)> {
    let k = sc
        .cells
        .iter()
        .find(|c| c.server == KCHAT)
        .and_then(&metric)?;
    let refs = sc.cells.iter().filter(|c| c.server != KCHAT);
    let (best, v) = refs
        .filter_map(|c| metric(c).map(|v| (c, v)))
        .filter(|(_, v)| *v > 0.0)
        .reduce(|a, b| if (b.1 > a.1) == higher { b } else { a })?;
    Some((k, &best.server, v))
}

/// Formats a number with thousands separators (no decimals).
fn thousands(v: f64) -> String {
    let s = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// `a / b` as `1.23x`, or `-`.
fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}x", a / b)
    } else {
        "-".into()
    }
}

/// The markdown report.
pub(crate) fn markdown(scenarios: &[Scenario], source: &str, runs: usize) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# kchat-bench results\n");
    let _ = writeln!(
        md,
        "{runs} runs from `{source}`. Each number is the median over a server's successful \
         runs of a scenario (over all its runs if none succeeded). msgs/s counts deliveries (one message reaching one recipient); CPU is \
         machine busy time minus the load generator's, per delivery; bad = lost + \
         duplicated + reordered + corrupted, summed over runs.\n"
    );
    for sc in scenarios {
        scenario_table(&mut md, sc);
    }
    summary_table(&mut md, scenarios);
    md
}

/// One scenario's table.
fn scenario_table(md: &mut String, sc: &Scenario) {
    let f = &sc.first;
    let rooms = f.rooms.map_or(String::new(), |r| format!(" in {r} rooms"));
    let _ = writeln!(
        md,
        "## {}\n\n{} clients{rooms}, {} senders, {} stalled, {} B payload, {} messages per \
         sender, window {}, protocol {}.\n",
        sc.name,
        f.clients,
        f.senders,
        f.stalled,
        f.payload_bytes,
        f.messages_per_sender,
        f.window,
        f.protocol
    );
    let _ = writeln!(
        md,
        "| server | runs | msgs/s | p50 µs | p99 µs | CPU µs/msg | bad | failed runs |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for c in &sc.cells {
        let cpu = c.cpu_us_per_msg.map_or("-".into(), |v| format!("{v:.2}"));
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.1} | {:.1} | {cpu} | {} | {} |",
            c.server,
            c.runs,
            thousands(c.msgs_per_s),
            c.p50_us,
            c.p99_us,
            c.bad,
            c.failed
        );
    }
    md.push('\n');
}

/// The kchat-versus-best-reference table, one row per scenario that has both.
fn summary_table(md: &mut String, scenarios: &[Scenario]) {
    let _ = writeln!(
        md,
        "## kchat vs the best reference server\n\nBest = highest msgs/s, lowest p99, lowest \
         CPU per message among the other servers, each chosen separately. A throughput ratio \
         above 1 and latency or CPU ratios below 1 favour kchat.\n"
    );
    let _ = writeln!(
        md,
        "| scenario | kchat msgs/s | best ref msgs/s | ratio | kchat p99 µs | best ref p99 µs | ratio | kchat CPU µs/msg | best ref CPU µs/msg | ratio |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut rows = 0;
    for sc in scenarios {
        let Some((kt, rt_name, rt)) = versus(sc, |c| Some(c.msgs_per_s), true) else {
            continue;
        };
        let mut row = format!(
            "| {} | {} | {} ({rt_name}) | {} |",
            sc.name,
            thousands(kt),
            thousands(rt),
            ratio(kt, rt)
        );
        for (metric, digits) in [
            (
                &(|c: &Cell| Some(c.p99_us)) as &dyn Fn(&Cell) -> Option<f64>,
                1,
            ),
            (&|c: &Cell| c.cpu_us_per_msg, 2),
        ] {
            match versus(sc, metric, false) {
                Some((k, name, r)) => {
                    let _ = write!(
                        row,
                        " {k:.digits$} | {r:.digits$} ({name}) | {} |",
                        ratio(k, r)
                    );
                }
                None => row.push_str(" - | - | - |"),
            }
        }
        let _ = writeln!(md, "{row}");
        rows += 1;
    }
    if rows == 0 {
        let _ = writeln!(
            md,
            "| (no scenario has both kchat and a reference) | | | | | | | | | |"
        );
    }
}

/// Runs `kchat-bench report`.
pub(crate) fn run(o: &ReportOptions) -> Result<(), String> {
    let records = load(&o.input)?;
    if records.is_empty() {
        return Err(format!("{}: no records", o.input.display()));
    }
    let scenarios = group(&records);
    if let Some(path) = &o.markdown {
        let md = markdown(&scenarios, &o.input.display().to_string(), records.len());
        fs::write(path, md).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if let Some(path) = &o.svg {
        chart::write_svg(path, &scenarios)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(scenario: &str, server: &str, rate: f64, p99: f64, cpu: f64) -> Record {
        Record {
            scenario: scenario.into(),
            server: server.into(),
            msgs_per_s: rate,
            p99_us: p99,
            server_cpu_us_per_msg: Some(cpu),
            ok: true,
            ..Record::default()
        }
    }

    /// Checks grouping (scenario and server order of first appearance), medians over
    /// repeated runs, the per-metric best reference and the ratios in the markdown.
    #[test]
    fn tables() {
        let recs = vec![
            rec("fanout", "kchat", 300.0, 10.0, 1.0),
            rec("fanout", "ref-epoll", 100.0, 20.0, 4.0),
            rec("fanout", "kchat", 500.0, 30.0, 3.0),
            rec("fanout", "redis", 150.0, 40.0, 2.0),
            Record {
                rooms: Some(2),
                ..rec("solo", "redis", 1.0, 1.0, 1.0)
            },
        ];
        let sc = group(&recs);
        assert_eq!(sc.len(), 2);
        let k = &sc[0].cells[0];
        assert_eq!((k.server.as_str(), k.runs), ("kchat", 2));
        assert_eq!(
            (k.msgs_per_s, k.p99_us, k.cpu_us_per_msg),
            (400.0, 20.0, Some(2.0))
        );
        assert_eq!(
            versus(&sc[0], |c| Some(c.msgs_per_s), true),
            Some((400.0, "redis", 150.0))
        );
        assert_eq!(
            versus(&sc[0], |c| Some(c.p99_us), false),
            Some((20.0, "ref-epoll", 20.0))
        );
        assert_eq!(versus(&sc[1], |c| Some(c.msgs_per_s), true), None);
        let md = markdown(&sc, "x.json", recs.len());
        assert!(
            md.contains("| fanout | 400 | 150 (redis) | 2.67x |"),
            "{md}"
        );
        assert!(md.contains("| 2.00 | 2.00 (redis) | 1.00x |"), "{md}");
        assert!(
            md.contains("## solo\n\n0 clients in 2 rooms, 0 senders"),
            "{md}"
        );
        assert_eq!(thousands(1_234_567.4), "1,234,567");
    }

    /// Checks that both input forms load: JSON lines (blank lines skipped) and a JSON array.
    #[test]
    fn input_forms() {
        let dir = std::env::temp_dir();
        let lines = dir.join(format!("kchat-bench-report-{}.jsonl", std::process::id()));
        fs::write(&lines, "{\"server\":\"a\"}\n\n{\"server\":\"b\"}\n").unwrap();
        assert_eq!(load(&lines).unwrap().len(), 2);
        fs::write(&lines, "[{\"server\":\"a\"}]").unwrap();
        assert_eq!(load(&lines).unwrap()[0].server, "a");
        fs::write(&lines, "{\"server\":\"a\"}\nnot json\n").unwrap();
        assert!(load(&lines).unwrap_err().contains(":2:"));
        let _ = fs::remove_file(&lines);
    }
}
