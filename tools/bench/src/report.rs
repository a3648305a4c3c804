// SPDX-License-Identifier: GPL-2.0
//! `kchat-bench report`: reads JSON records and writes a markdown comparison (one table per
//! scenario and a kchat-versus-best-reference summary) and an SVG chart; IRC scenarios get a
//! section (and, with `--irc-svg`, a chart) of their own, with their own summary.
//!
//! The servers named exactly `kchat` (its own protocol) and `kchat-irc` (its IRC port) are
//! kchat; every other server is a reference. When a server ran a scenario several times, each
//! metric is the median over its runs. A record of a run that did not happen (`not_run`)
//! counts as no run; its server is listed as not run, with the reason.

use std::{fmt::Write as _, fs, path::Path};

use crate::{chart, options::ReportOptions, record::Record};

/// The server names that mean kchat itself: its own protocol, and its IRC port.
pub(crate) const KCHAT: [&str; 2] = ["kchat", "kchat-irc"];

/// kchat itself with another configuration (`kchat-copy`: the plain-copy send path;
/// `kchat-cluster3`: three nodes joined through NATS), shown in
/// the tables but never taken for a reference.
const KCHAT_VARIANTS: [&str; 2] = ["kchat-copy", "kchat-cluster3"];

/// True if `server` is kchat itself.
fn is_kchat(server: &str) -> bool {
    KCHAT.contains(&server)
}

/// One server's results in one scenario (medians over its runs).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Cell {
    pub(crate) server: String,
    /// Runs that happened (not those recorded as not run).
    pub(crate) runs: usize,
    /// Runs that were not `ok`.
    pub(crate) failed: usize,
    /// Why runs failed: each distinct reason and how many runs it ended.
    pub(crate) failures: Vec<(String, usize)>,
    /// Why the server did not run the scenario, when none of its runs happened.
    pub(crate) not_run: Option<String>,
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
    /// The parameters: the first record of a run that happened (else the first record).
    pub(crate) first: Record,
    pub(crate) cells: Vec<Cell>,
}

impl Scenario {
    /// An IRC scenario (reported apart from the others).
    pub(crate) fn irc(&self) -> bool {
        self.first.protocol == "irc"
    }
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

/// Why a run failed: its abort reason, else what went wrong in it.
fn failure(r: &Record) -> String {
    r.abort_reason.clone().unwrap_or_else(|| {
        format!(
            "{} lost, {} duplicated, {} reordered, {} corrupted, {} errors",
            r.lost, r.duplicated, r.reordered, r.corrupted, r.errors
        )
    })
}

/// Summarises one server's records of one scenario: medians over the runs that succeeded
/// (over all of them if none did), counts over all; records of runs that did not happen
/// count only when there is nothing else (the cell is then not run).
fn cell(server: &str, records: &[&Record]) -> Cell {
    let runs: Vec<&Record> = records
        .iter()
        .copied()
        .filter(|r| r.not_run.is_none())
        .collect();
    let runs = &runs[..];
    let mut failures: Vec<(String, usize)> = Vec::new();
    for r in runs.iter().filter(|r| !r.ok) {
        let why = failure(r);
        match failures.iter_mut().find(|(w, _)| *w == why) {
            Some((_, n)) => *n += 1,
            None => failures.push((why, 1)),
        }
    }
    let not_run = runs
        .is_empty()
        .then(|| records.iter().find_map(|r| r.not_run.clone()))
        .flatten();
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
        failures,
        not_run,
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
            let first = rs.iter().find(|r| r.not_run.is_none()).unwrap_or(&rs[0]);
            Scenario {
                name: name.to_string(),
                first: (*first).clone(),
                cells,
            }
        })
        .collect()
}

/// kchat's cell of a scenario, if it ran.
fn kchat_cell(sc: &Scenario) -> Option<&Cell> {
    sc.cells.iter().find(|c| is_kchat(&c.server) && c.runs > 0)
}

/// kchat's cell and the best reference cell for one metric (`higher` = bigger is better).
fn versus(
    sc: &Scenario,
    metric: impl Fn(&Cell) -> Option<f64>,
    higher: bool,
) -> Option<(f64, &str, f64)> {
    let k = kchat_cell(sc).and_then(&metric)?;
    let (best, v) = best_reference(sc, metric, higher)?;
    Some((k, best, v))
}

/// The best reference cell (that ran) for one metric, and its value.
fn best_reference(
    sc: &Scenario,
    metric: impl Fn(&Cell) -> Option<f64>,
    higher: bool,
) -> Option<(&str, f64)> {
    let refs = sc
        .cells
        .iter()
        .filter(|c| !is_kchat(&c.server) && !KCHAT_VARIANTS.contains(&c.server.as_str()))
        .filter(|c| c.runs > 0);
    let (best, v) = refs
        .filter_map(|c| metric(c).map(|v| (c, v)))
        .filter(|(_, v)| *v > 0.0)
        .reduce(|a, b| if (b.1 > a.1) == higher { b } else { a })?;
    Some((&best.server, v))
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

/// The markdown report: the tables of the scenarios and their summary, then those of the
/// IRC scenarios and theirs.
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
    let (irc, other): (Vec<&Scenario>, Vec<&Scenario>) = scenarios.iter().partition(|s| s.irc());
    if !other.is_empty() || irc.is_empty() {
        for sc in &other {
            scenario_table(&mut md, sc);
        }
        summary_table(
            &mut md,
            &other,
            "kchat vs the best reference server",
            "kchat",
            "the other servers",
        );
    }
    if !irc.is_empty() {
        let _ = writeln!(
            md,
            "## IRC\n\nThe same kind of load over IRC: every client registers (`NICK`, `USER`), \
             joins its channel, and senders send `PRIVMSG #channel :PAYLOAD` (the payload as \
             text). `kchat-irc` is kchat's IRC port; the others are IRC servers run as \
             configured for the benchmark (no throttling, no flood limits).\n"
        );
        for sc in &irc {
            scenario_table(&mut md, sc);
        }
        summary_table(
            &mut md,
            &irc,
            "kchat's IRC port vs the best IRC server",
            "kchat-irc",
            "the IRC servers",
        );
    }
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
        if c.runs == 0 {
            let _ = writeln!(md, "| {} | 0 | not run | - | - | - | - | - |", c.server);
            continue;
        }
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
    for c in &sc.cells {
        if let Some(why) = &c.not_run {
            let _ = writeln!(md, "- {}: not run: {why}", c.server);
        }
        for (why, n) in &c.failures {
            let _ = writeln!(md, "- {}: {n} of {} runs failed: {why}", c.server, c.runs);
        }
    }
    if sc.cells.iter().any(|c| c.not_run.is_some() || c.failed > 0) {
        md.push('\n');
    }
}

/// The kchat-versus-best-reference table (titled `title`; kchat's column `k`, the references
/// `refs`), one row per scenario that has both. A scenario where every kchat run failed
/// says so instead of comparing the failed runs' numbers.
fn summary_table(md: &mut String, scenarios: &[&Scenario], title: &str, k: &str, refs: &str) {
    let _ = writeln!(
        md,
        "## {title}\n\nBest = highest msgs/s, lowest p99, lowest \
         CPU per message among {refs}, each chosen separately. A throughput ratio \
         above 1 and latency or CPU ratios below 1 favour kchat.\n"
    );
    let _ = writeln!(
        md,
        "| scenario | {k} msgs/s | best ref msgs/s | ratio | {k} p99 µs | best ref p99 µs | ratio | {k} CPU µs/msg | best ref CPU µs/msg | ratio |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut rows = 0;
    for sc in scenarios.iter().copied() {
        if let Some(kc) = kchat_cell(sc).filter(|c| c.failed == c.runs) {
            let Some((rt_name, rt)) = best_reference(sc, |c| Some(c.msgs_per_s), true) else {
                continue;
            };
            let _ = writeln!(
                md,
                "| {} | failed ({} of {} runs) | {} ({rt_name}) | - | - | - | - | - | - | - |",
                sc.name,
                kc.failed,
                kc.runs,
                thousands(rt)
            );
            rows += 1;
            continue;
        }
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
            "| (no scenario has both {k} and a reference) | | | | | | | | | |"
        );
    }
}

/// Writes the chart of `scenarios` to `path`; with none, writes nothing and removes an older
/// chart there (it would show another run's numbers).
fn chart_of(path: &Path, scenarios: &[Scenario]) -> Result<(), String> {
    if scenarios.is_empty() {
        return match fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(format!("{}: {e}", path.display()))
            }
            _ => Ok(()),
        };
    }
    chart::write_svg(path, scenarios)
}

/// Runs `kchat-bench report`.
pub(crate) fn run(o: &ReportOptions) -> Result<(), String> {
    let records = load(&o.input)?;
    if records.is_empty() {
        return Err(format!("{}: no records", o.input.display()));
    }
    let scenarios = group(&records);
    if let Some(path) = &o.markdown {
        let runs = records.iter().filter(|r| r.not_run.is_none()).count();
        let md = markdown(&scenarios, &o.input.display().to_string(), runs);
        fs::write(path, md).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    match (&o.svg, &o.irc_svg) {
        (Some(path), None) => chart_of(path, &scenarios)?,
        (svg, Some(irc_path)) => {
            let (irc, other): (Vec<Scenario>, Vec<Scenario>) =
                scenarios.into_iter().partition(Scenario::irc);
            if let Some(path) = svg {
                chart_of(path, &other)?;
            }
            chart_of(irc_path, &irc)?;
        }
        (None, None) => {}
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

    /// Checks the IRC part: IRC scenarios after the others, under their own summary with
    /// kchat-irc as kchat; a server recorded as not run is listed with its reason and counts
    /// no run; a kchat-irc whose every run failed is said to have failed, not compared.
    #[test]
    fn irc_section() {
        let irc = |scenario: &str, server: &str, rate: f64| Record {
            protocol: "irc".into(),
            clients: 10,
            ..rec(scenario, server, rate, 5.0, 1.0)
        };
        let refused = Record {
            ok: false,
            aborted: true,
            abort_reason: Some("no sender connected".into()),
            msgs_per_s: 0.0,
            ..irc("irc-small", "kchat-irc", 0.0)
        };
        let not_run = Record {
            not_run: Some("inspircd is not installed on the host".into()),
            clients: 0,
            ..irc("irc-small", "inspircd", 0.0)
        };
        let recs = vec![
            not_run.clone(),
            refused.clone(),
            refused,
            irc("irc-small", "ngircd", 4000.0),
            rec("small", "kchat", 300.0, 10.0, 1.0),
            rec("small", "ref-epoll", 100.0, 20.0, 4.0),
            irc("irc-fanout", "kchat-irc", 900.0),
            irc("irc-fanout", "ngircd", 450.0),
            Record {
                not_run: Some("inspircd is not installed on the host".into()),
                ..irc("irc-fanout", "inspircd", 0.0)
            },
        ];
        let sc = group(&recs);
        let small = &sc[0];
        assert!(
            small.irc() && small.first.clients == 10,
            "parameters of a run"
        );
        assert_eq!(small.cells[0].runs, 0);
        assert_eq!(
            small.cells[1].failures,
            [("no sender connected".to_string(), 2)]
        );
        let md = markdown(&sc, "x.json", 7);
        let (native, irc_part) = md.split_once("## IRC\n").expect("an IRC section");
        assert!(native.contains("## small\n") && !native.contains("irc-small"));
        assert!(
            native.contains("| small | 300 | 100 (ref-epoll) | 3.00x |"),
            "{md}"
        );
        assert!(irc_part.contains("| inspircd | 0 | not run |"), "{md}");
        assert!(
            irc_part.contains("- inspircd: not run: inspircd is not installed on the host"),
            "{md}"
        );
        assert!(
            irc_part.contains("- kchat-irc: 2 of 2 runs failed: no sender connected"),
            "{md}"
        );
        assert!(
            irc_part.contains("## kchat's IRC port vs the best IRC server"),
            "{md}"
        );
        assert!(
            irc_part.contains("| irc-small | failed (2 of 2 runs) | 4,000 (ngircd) |"),
            "{md}"
        );
        assert!(
            irc_part.contains("| irc-fanout | 900 | 450 (ngircd) | 2.00x |"),
            "{md}"
        );
    }

    /// Checks the charts: with --irc-svg the IRC scenarios go there and the others to --svg;
    /// a chart with no scenario is not written, and an older one at its path is removed.
    #[test]
    fn irc_chart() {
        let dir = std::env::temp_dir().join(format!("kchat-bench-irc-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let input = dir.join("in.json");
        let line = |sc: &str, server: &str, proto: &str| {
            format!(
                "{{\"scenario\":\"{sc}\",\"server\":\"{server}\",\"protocol\":\"{proto}\",\"msgs_per_s\":5,\"ok\":true}}\n"
            )
        };
        fs::write(
            &input,
            line("irc-small", "ngircd", "irc") + &line("irc-small", "kchat-irc", "irc"),
        )
        .unwrap();
        let (svg, irc_svg) = (dir.join("a.svg"), dir.join("irc.svg"));
        fs::write(&svg, "old").unwrap();
        let o = ReportOptions {
            input: input.clone(),
            markdown: None,
            svg: Some(svg.clone()),
            irc_svg: Some(irc_svg.clone()),
        };
        run(&o).unwrap();
        assert!(!svg.exists(), "no native scenario: no native chart");
        let chart = fs::read_to_string(&irc_svg).unwrap();
        assert!(chart.contains("\nngircd\n") && chart.contains("\nkchat-irc\n"));
        fs::write(&input, line("small", "kchat", "kchat")).unwrap();
        run(&o).unwrap();
        assert!(svg.exists() && !irc_svg.exists());
        let _ = fs::remove_dir_all(&dir);
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
