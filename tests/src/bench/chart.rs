//! The PNG chart: small-call latency per transport (median bars, p99 whiskers) for the
//! framework's async (on the default multi-threaded runtime) and blocking clients, the raw
//! ping-pong of the same mechanism and tarpc.
//!
//! Text is drawn with plotters' pure-Rust `ab_glyph` backend and the DejaVu Sans font
//! embedded by the `dejavu` crate, so no system font library or font file is needed.

use std::path::Path;
use std::sync::Once;

use anyhow::anyhow;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{FontStyle, register_font};

use super::report::Report;
use super::runtimes::RuntimeKind;
use super::stats::Latency;

/// One group of bars: a transport or mechanism name and up to four latencies.
struct Group {
    name: String,
    bars: [Option<Latency>; 4],
}

const SERIES: [(&str, RGBColor); 4] = [
    ("rpc-core (async client)", RGBColor(31, 119, 180)),
    ("rpc-core (blocking client)", RGBColor(148, 103, 189)),
    ("raw ping-pong", RGBColor(44, 160, 44)),
    ("tarpc (bincode)", RGBColor(255, 127, 14)),
];

fn groups(report: &Report) -> Vec<Group> {
    let mut groups: Vec<Group> = report
        .transports
        .iter()
        .map(|t| Group {
            name: t.transport.to_owned(),
            bars: [
                Some(t.on(RuntimeKind::MultiThread).latency),
                t.latency_blocking,
                report.raw_of(t.raw_mechanism).map(|r| r.latency),
                report
                    .tarpc_of(t.tarpc)
                    .map(|r| r.on(RuntimeKind::MultiThread).latency),
            ],
        })
        .collect();
    for raw in &report.raw {
        if !report
            .transports
            .iter()
            .any(|t| t.raw_mechanism == Some(raw.mechanism))
        {
            groups.push(Group {
                name: format!("{} (raw only)", raw.mechanism.name()),
                bars: [None, None, Some(raw.latency), None],
            });
        }
    }
    groups
}

/// Draws the chart of `report` into a PNG file at `path`.
pub fn draw(report: &Report, path: &Path) -> anyhow::Result<()> {
    static FONT: Once = Once::new();
    let mut font_error = false;
    FONT.call_once(|| {
        font_error =
            register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular()).is_err();
    });
    if font_error {
        return Err(anyhow!("the embedded DejaVu font did not load"));
    }
    let groups = groups(report);
    if groups.is_empty() {
        return Err(anyhow!("nothing to draw"));
    }
    let values = || groups.iter().flat_map(|g| g.bars.iter().flatten());
    // A log scale: medians of a few hundred nanoseconds (shared memory) and p99s of
    // milliseconds (a busy virtual machine) on one chart.
    let top = 10f64.powf(
        values()
            .map(|l| l.p99_us.max(l.median_us))
            .fold(1.0f64, f64::max)
            .log10()
            .ceil()
            + 0.3,
    );
    let bottom = 10f64.powf(
        values()
            .map(|l| l.median_us / 2.0)
            .fold(top, f64::min)
            .max(1e-3)
            .log10()
            .floor(),
    );
    let plot = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
    let width = (240 + 150 * groups.len() as u32).max(640);
    let root = BitMapBackend::new(path, (width, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot(&e))?;
    let n = groups.len();
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Small-call latency, µs (bar: median, line: to p99) — {} run, pin {}",
                report.mode,
                format!("{:?}", report.pin).to_lowercase()
            ),
            ("sans-serif", 20),
        )
        .margin(16)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), (bottom..top).log_scale())
        .map_err(|e| plot(&e))?;
    let names: Vec<String> = groups.iter().map(|g| g.name.clone()).collect();
    let label = move |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < names.len() {
            names[i as usize].clone()
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n + 1)
        .x_label_formatter(&label)
        .y_desc("µs (log scale)")
        .y_label_formatter(&|v| format!("{v}"))
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| plot(&e))?;
    let width = 0.2;
    for (s, (series, color)) in SERIES.iter().enumerate() {
        let offset = (s as f64 - 1.5) * width;
        let bars: Vec<(f64, Latency)> = groups
            .iter()
            .enumerate()
            .filter_map(|(i, g)| g.bars[s].map(|l| (i as f64 + offset, l)))
            .collect();
        chart
            .draw_series(bars.iter().map(|&(x, l)| {
                Rectangle::new(
                    [(x - width / 2.0, bottom), (x + width / 2.0, l.median_us)],
                    color.filled(),
                )
            }))
            .map_err(|e| plot(&e))?
            .label(*series)
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled()));
        chart
            .draw_series(bars.iter().map(|&(x, l)| {
                PathElement::new(vec![(x, l.median_us), (x, l.p99_us)], BLACK.stroke_width(1))
            }))
            .map_err(|e| plot(&e))?;
        chart
            .draw_series(bars.iter().map(|&(x, l)| {
                Text::new(
                    if l.median_us < 10.0 {
                        format!("{:.2}", l.median_us)
                    } else {
                        format!("{:.0}", l.median_us)
                    },
                    (x, l.median_us),
                    ("sans-serif", 12)
                        .into_font()
                        .color(&BLACK)
                        .pos(Pos::new(HPos::Center, VPos::Bottom)),
                )
            }))
            .map_err(|e| plot(&e))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(|e| plot(&e))?;
    root.present().map_err(|e| plot(&e))?;
    Ok(())
}
