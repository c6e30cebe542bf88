//! Plots next to a results file, each as SVG and PNG: Mpps vs rule count,
//! Mpps vs flow count (one line per worker count) and the latency CDFs (one
//! worker, one line per workload).
//!
//! Text is drawn by plotters' ab_glyph backend, which needs a TrueType font
//! registered at run time: the first of [`FONTS`] that exists (or
//! `$SLUICE_BENCH_FONT`). Without one, no plots (the results still stand).

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::results::{Results, WorkloadResult};

/// Where fonts usually live.
pub const FONTS: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

fn register_font() -> Result<()> {
    static DONE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = DONE.get_or_init(|| {
        let env = std::env::var("SLUICE_BENCH_FONT").ok();
        let candidates = env.iter().map(String::as_str).chain(FONTS);
        for c in candidates {
            if let Ok(bytes) = std::fs::read(c) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    });
    if *ok {
        Ok(())
    } else {
        bail!("no TrueType font found (set SLUICE_BENCH_FONT)")
    }
}

/// Tableau 10.
const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

const SIZE: (u32, u32) = (960, 600);

/// A line chart over categories (x = index, labelled with the category).
struct Sweep {
    title: String,
    x_desc: &'static str,
    categories: Vec<String>,
    /// (label, y per category).
    series: Vec<(String, Vec<Option<f64>>)>,
}

fn e<E: std::fmt::Display>(x: E) -> anyhow::Error {
    anyhow!("plot: {x}")
}

fn draw_sweep<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, s: &Sweep) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(e)?;
    let ymax = s
        .series
        .iter()
        .flat_map(|(_, v)| v.iter().flatten())
        .fold(0.0f64, |a, b| a.max(*b))
        * 1.15;
    let n = s.categories.len().max(2);
    let mut chart = ChartBuilder::on(&root)
        .caption(&s.title, ("sans-serif", 24))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.3f64..(n as f64 - 0.7), 0f64..ymax.max(0.1))
        .map_err(e)?;
    let cats = s.categories.clone();
    let fmt = move |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 1e-6 && i >= 0.0 {
            cats.get(i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .x_desc(s.x_desc)
        .y_desc("Mpps")
        .x_labels(n * 4)
        .x_label_formatter(&fmt)
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 18))
        .draw()
        .map_err(e)?;
    for (k, (label, ys)) in s.series.iter().enumerate() {
        let c = COLORS[k % COLORS.len()];
        let pts: Vec<(f64, f64)> = ys
            .iter()
            .enumerate()
            .filter_map(|(i, y)| y.map(|y| (i as f64, y)))
            .collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(3)))
            .map_err(e)?
            .label(label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], c.stroke_width(3)));
        chart
            .draw_series(pts.iter().map(|p| Circle::new(*p, 5, c.filled())))
            .map_err(e)?;
        chart
            .draw_series(pts.iter().map(|&(x, y)| {
                Text::new(
                    format!("{y:.2}"),
                    (x + 0.05, y + ymax * 0.02),
                    ("sans-serif", 14).into_font().color(&c),
                )
            }))
            .map_err(e)?;
    }
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 16))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(e)?;
    root.present().map_err(e)?;
    Ok(())
}

/// (label, points (ns, quantile)).
type Cdf = Vec<(String, Vec<(f64, f64)>)>;

fn draw_cdf<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, title: &str, cdf: &Cdf) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(e)?;
    let all = cdf.iter().flat_map(|(_, v)| v.iter().map(|p| p.0));
    let (lo, hi) = all.fold((f64::MAX, 0.0f64), |(a, b), x| (a.min(x), b.max(x)));
    let (lo, hi) = if lo > hi { (1.0, 1000.0) } else { (lo, hi) };
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(((lo * 0.8).max(0.5)..hi * 1.25).log_scale(), 0f64..1.0f64)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("ns per packet (per batch time / batch size, log scale)")
        .y_desc("fraction of packets")
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 18))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()
        .map_err(e)?;
    for (k, (label, pts)) in cdf.iter().enumerate() {
        let c = COLORS[k % COLORS.len()];
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
            .map_err(e)?
            .label(label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], c.stroke_width(3)));
    }
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(e)?;
    root.present().map_err(e)?;
    Ok(())
}

fn sweep(
    r: &Results,
    prefix: &str,
    key: fn(&WorkloadResult) -> usize,
    title: &str,
    x_desc: &'static str,
) -> Option<Sweep> {
    let mut ws: Vec<&WorkloadResult> = r
        .workloads
        .iter()
        .filter(|w| w.name.starts_with(prefix) && !w.runs.is_empty())
        .collect();
    if ws.len() < 2 {
        return None;
    }
    ws.sort_by_key(|w| key(w));
    let mut workers: Vec<usize> = ws
        .iter()
        .flat_map(|w| w.runs.iter().map(|r| r.workers))
        .collect();
    workers.sort_unstable();
    workers.dedup();
    let series = workers
        .iter()
        .map(|&n| {
            (
                format!("{n} worker{}", if n == 1 { "" } else { "s" }),
                ws.iter()
                    .map(|w| w.runs.iter().find(|r| r.workers == n).map(|r| r.mpps))
                    .collect(),
            )
        })
        .collect();
    Some(Sweep {
        title: title.to_string(),
        x_desc,
        categories: ws.iter().map(|w| human(key(w))).collect(),
        series,
    })
}

/// 1000 -> "1k", 1000000 -> "1M".
pub fn human(n: usize) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if n >= 1000 && n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

/// Draws every plot the results support into `dir`; returns the files.
pub fn plot_all(r: &Results, dir: &Path) -> Result<Vec<PathBuf>> {
    register_font()?;
    let mut files = Vec::new();
    let cpu = if r.host.cpu_model.is_empty() {
        String::new()
    } else {
        format!(" — {}", r.host.cpu_model)
    };
    let sweeps = [
        (
            "mpps-vs-rules",
            sweep(
                r,
                "rules-",
                |w| w.rules,
                &format!("sluice replay: Mpps vs policy rules{cpu}"),
                "ingress rules in the policy",
            ),
        ),
        (
            "mpps-vs-flows",
            sweep(
                r,
                "flows-",
                |w| w.flows,
                &format!("sluice replay: Mpps vs concurrent flows{cpu}"),
                "long-lived flows",
            ),
        ),
    ];
    for (stem, s) in sweeps {
        let Some(s) = s else { continue };
        let svg = dir.join(format!("{stem}.svg"));
        draw_sweep(SVGBackend::new(&svg, SIZE).into_drawing_area(), &s)?;
        let png = dir.join(format!("{stem}.png"));
        draw_sweep(BitMapBackend::new(&png, SIZE).into_drawing_area(), &s)?;
        files.extend([svg, png]);
    }
    let cdf: Cdf = r
        .workloads
        .iter()
        .filter_map(|w| {
            let run = w.runs.iter().find(|r| r.workers == 1)?;
            let pts: Vec<(f64, f64)> = run
                .latency_cdf
                .iter()
                .map(|&(q, ns)| (ns.max(1) as f64, q))
                .collect();
            (!pts.is_empty()).then(|| (w.name.clone(), pts))
        })
        .collect();
    if !cdf.is_empty() {
        let title = "sluice replay: per-packet latency CDF, 1 worker";
        let svg = dir.join("latency-cdf.svg");
        draw_cdf(SVGBackend::new(&svg, SIZE).into_drawing_area(), title, &cdf)?;
        let png = dir.join("latency-cdf.png");
        draw_cdf(
            BitMapBackend::new(&png, SIZE).into_drawing_area(),
            title,
            &cdf,
        )?;
        files.extend([svg, png]);
    }
    Ok(files)
}

/// The live loss-free rate (NDR) against the policy's rule count, one line
/// per forwarder measured at more than one rule count (sluice and the
/// kernel), from `sluice-bench peers`; SVG and PNG into `dir`.
pub fn plot_live_rules(points: &[super::peers::LivePoint], dir: &Path) -> Result<Vec<PathBuf>> {
    let mut rules: Vec<usize> = points.iter().map(|p| p.rules).collect();
    rules.sort_unstable();
    rules.dedup();
    if rules.len() < 2 {
        bail!("the rules plot needs live runs at two rule counts or more");
    }
    let mut peers: Vec<&str> = Vec::new();
    for p in points {
        if !peers.contains(&p.peer.as_str())
            && points.iter().filter(|q| q.peer == p.peer).count() > 1
        {
            peers.push(&p.peer);
        }
    }
    let series = peers
        .iter()
        .map(|&peer| {
            let ys = rules
                .iter()
                .map(|&r| {
                    points
                        .iter()
                        .find(|p| p.peer == peer && p.rules == r)
                        .and_then(|p| p.figures.ndr)
                })
                .collect();
            (format!("{peer} NDR (loss <= 0.1%)"), ys)
        })
        .collect();
    register_font()?;
    let s = Sweep {
        title: "live veth forwarding, 64-byte UDP, one core: loss-free Mpps vs rules".into(),
        x_desc: "rules in the policy (nftables: the equivalent ruleset)",
        categories: rules.iter().map(|&r| human(r)).collect(),
        series,
    };
    let svg = dir.join("live-ndr-vs-rules.svg");
    draw_sweep(SVGBackend::new(&svg, SIZE).into_drawing_area(), &s)?;
    let png = dir.join("live-ndr-vs-rules.png");
    draw_sweep(BitMapBackend::new(&png, SIZE).into_drawing_area(), &s)?;
    Ok(vec![svg, png])
}
