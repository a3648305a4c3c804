// SPDX-License-Identifier: GPL-2.0
//! The report's SVG chart: three panels (throughput, p99 latency, CPU per message), each a
//! grouped bar chart with one group per scenario and one bar per server.
//!
//! Drawn with plotters' SVG backend only: text is laid out with plotters' built-in size
//! estimate and rendered by the SVG viewer, so no font files are needed.

use std::path::Path;

use plotters::{coord::combinators::WithKeyPoints, prelude::*};

use crate::report::{Cell, Scenario};

/// Bar colours, one per server in order of first appearance (repeated if more).
const COLOURS: [RGBColor; 8] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x7f, 0x7f, 0x7f),
];

/// Width of one scenario's group on the x axis.
const UNIT: i32 = 1000;

/// One panel: a title and the value a cell contributes.
struct Panel {
    title: &'static str,
    value: fn(&Cell) -> Option<f64>,
}

const PANELS: [Panel; 3] = [
    Panel {
        title: "Throughput (deliveries/s, higher is better)",
        value: |c| Some(c.msgs_per_s),
    },
    Panel {
        title: "p99 latency (µs, lower is better)",
        value: |c| Some(c.p99_us),
    },
    Panel {
        title: "Server CPU per delivery (µs, lower is better)",
        value: |c| c.cpu_us_per_msg,
    },
];

/// Every server that ran in the scenarios, in order of first appearance.
fn servers(scenarios: &[Scenario]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in scenarios
        .iter()
        .flat_map(|s| &s.cells)
        .filter(|c| c.runs > 0)
    {
        if !out.contains(&c.server) {
            out.push(c.server.clone());
        }
    }
    out
}

/// Height of the legend strip above the panels.
const LEGEND_H: u32 = 40;

/// Writes the chart to `path`.
pub(crate) fn write_svg(path: &Path, scenarios: &[Scenario]) -> Result<(), String> {
    let width = (240 + 110 * scenarios.len() as u32).clamp(800, 2400);
    let root = SVGBackend::new(path, (width, 1050 + LEGEND_H)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let servers = servers(scenarios);
    let (legend, panels) = root.split_vertically(LEGEND_H);
    draw_legend(&legend, &servers).map_err(|e| err(&e))?;
    for (area, panel) in panels.split_evenly((3, 1)).iter().zip(PANELS.iter()) {
        draw_panel(area, panel, scenarios, &servers).map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))
}

/// The drawing area type of every part of the chart.
type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

/// One legend for all panels: a coloured box and the name of each server.
fn draw_legend(area: &Area<'_>, servers: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let mut x = 90;
    for (j, server) in servers.iter().enumerate() {
        let colour = COLOURS[j % COLOURS.len()];
        area.draw(&Rectangle::new([(x, 14), (x + 14, 28)], colour.filled()))?;
        area.draw(&Text::new(
            server.as_str(),
            (x + 20, 14),
            ("sans-serif", 16),
        ))?;
        x += 40 + 9 * server.chars().count() as i32;
    }
    Ok(())
}

/// How a panel's values map to bar heights: plain, or log10 when they span more than
/// [`LOG_SPAN`] (so that a 1,000 msg/s scenario stays visible beside a 1,000,000 one).
#[derive(Debug, Clone, Copy)]
struct Scale {
    log: bool,
    /// The axis bottom, in plotted units.
    bottom: f64,
    /// The axis top, in plotted units.
    top: f64,
}

/// Values spanning more than this factor get a log axis.
const LOG_SPAN: f64 = 20.0;

impl Scale {
    fn new(values: impl Iterator<Item = f64>) -> Self {
        let (lo, hi) = values
            .filter(|v| *v > 0.0)
            .fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
        if hi <= 0.0 {
            return Self {
                log: false,
                bottom: 0.0,
                top: 1.0,
            };
        }
        if hi / lo > LOG_SPAN {
            let bottom = lo.log10().floor();
            return Self {
                log: true,
                bottom,
                top: hi.log10() + 0.25,
            };
        }
        Self {
            log: false,
            bottom: 0.0,
            top: hi * 1.15,
        }
    }

    /// Where `v` goes on the axis.
    fn plot(self, v: f64) -> f64 {
        if self.log {
            v.max(f64::MIN_POSITIVE).log10().max(self.bottom)
        } else {
            v
        }
    }

    /// The value at axis position `y`.
    fn value(self, y: f64) -> f64 {
        if self.log {
            10f64.powf(y)
        } else {
            y
        }
    }
}

/// Draws one panel into `area`.
fn draw_panel(
    area: &Area<'_>,
    panel: &Panel,
    scenarios: &[Scenario],
    servers: &[String],
) -> Result<(), Box<dyn std::error::Error>> {
    let n = scenarios.len().max(1);
    let scale = Scale::new(
        scenarios
            .iter()
            .flat_map(|s| &s.cells)
            .filter_map(panel.value),
    );
    // UNIT x units per scenario (integers: the f64 axis cannot take custom key points);
    // its label sits at the group's centre.
    let centres: Vec<i32> = (0..n as i32).map(|i| i * UNIT + UNIT / 2).collect();
    let x: WithKeyPoints<_> = (0..n as i32 * UNIT).with_key_points(centres);
    let title = if scale.log {
        format!("{} [log scale]", panel.title)
    } else {
        panel.title.to_string()
    };
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(80)
        .build_cartesian_2d(x, scale.bottom..scale.top)?;
    let name = |v: &i32| {
        let i = (*v / UNIT).max(0) as usize;
        scenarios.get(i).map_or(String::new(), |s| s.name.clone())
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_label_formatter(&name)
        .y_label_formatter(&|v| short(scale.value(*v)))
        .draw()?;
    let group = UNIT * 8 / 10;
    let bar = group / servers.len().max(1) as i32;
    for (j, server) in servers.iter().enumerate() {
        let colour = COLOURS[j % COLOURS.len()];
        let bars = scenarios.iter().enumerate().filter_map(|(i, sc)| {
            let v = sc
                .cells
                .iter()
                .find(|c| &c.server == server && c.runs > 0)
                .and_then(panel.value)?;
            let x0 = i as i32 * UNIT + (UNIT - group) / 2 + j as i32 * bar;
            let top = scale.plot(v);
            Some(Rectangle::new(
                [(x0, scale.bottom), (x0 + bar * 9 / 10, top)],
                colour.filled(),
            ))
        });
        chart.draw_series(bars)?;
    }
    Ok(())
}

/// A short axis label: 1.2M, 340k, 12.5.
fn short(v: f64) -> String {
    match v.abs() {
        a if a >= 1e6 => format!("{:.1}M", v / 1e6),
        a if a >= 1e4 => format!("{:.0}k", v / 1e3),
        a if a >= 100.0 => format!("{v:.0}"),
        _ => format!("{v:.1}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{record::Record, report::group};

    /// Checks that a chart of two scenarios and three servers (one without CPU numbers) is
    /// written as SVG with the three panel titles, every server in the legend and the bars.
    #[test]
    fn writes_svg() {
        let rec = |sc: &str, s: &str, v: f64, cpu: Option<f64>| Record {
            scenario: sc.into(),
            server: s.into(),
            msgs_per_s: v,
            p99_us: v / 10.0,
            server_cpu_us_per_msg: cpu,
            ..Record::default()
        };
        let recs = vec![
            rec("a", "kchat", 1000.0, Some(1.0)),
            rec("a", "redis", 500.0, None),
            rec("b", "kchat", 2000.0, Some(2.0)),
            rec("b", "ref-epoll", 800.0, Some(3.0)),
        ];
        let path = std::env::temp_dir().join(format!("kchat-bench-{}.svg", std::process::id()));
        write_svg(&path, &group(&recs)).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(svg.starts_with("<svg"), "{}", &svg[..100.min(svg.len())]);
        for p in &PANELS {
            assert!(svg.contains(p.title), "{}", p.title);
        }
        for s in ["kchat", "redis", "ref-epoll"] {
            assert!(svg.contains(&format!("\n{s}\n")), "{s} in the legend");
        }
        assert!(svg.matches("<rect").count() >= 4 + 4 + 3, "bars");
        assert_eq!(short(1_500_000.0), "1.5M");
    }

    /// Checks the axis choice: linear for close values, log10 for values spanning more than
    /// 20x, and that mapping there and back gives the value.
    #[test]
    fn scales() {
        let lin = Scale::new([10.0, 50.0].into_iter());
        assert!(!lin.log && lin.top > 50.0);
        let log = Scale::new([10.0, 1e6].into_iter());
        assert!(log.log);
        assert_eq!(log.bottom, 1.0);
        assert!((log.value(log.plot(1234.0)) - 1234.0).abs() < 1e-6);
        assert!(!Scale::new(std::iter::empty()).log);
    }
}
