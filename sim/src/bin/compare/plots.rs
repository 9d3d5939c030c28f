//! The two SVGs of BENCHMARKS.md.

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

const COLORS: [RGBColor; 5] = [BLUE, RED, GREEN, MAGENTA, BLACK];

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("plot: {e}")
}

fn legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> Result<()> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)
}

/// Cumulative distribution of detection latencies, one line per system.
pub(crate) fn detection_cdf(path: &Path, title: &str, series: &[(String, Vec<f64>)]) -> Result<()> {
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let x_max = series.iter().flat_map(|(_, v)| v.iter().copied()).fold(1.0, f64::max) * 1.05;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(35)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..x_max, 0.0..1.0)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("seconds from crash until a node declares it Dead")
        .y_desc("fraction of (crash, node) pairs")
        .draw()
        .map_err(err)?;
    for (k, (label, values)) in series.iter().enumerate() {
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        // At most ~400 quantiles: 100,000 samples would make a 2 MB SVG.
        let n = sorted.len().max(1);
        let step = n.div_ceil(400).max(1);
        let points: Vec<(f64, f64)> = sorted
            .iter()
            .enumerate()
            .filter(|(i, _)| i % step == 0 || i + 1 == n)
            .map(|(i, &x)| (x, (i + 1) as f64 / n as f64))
            .collect();
        let color = COLORS[k % COLORS.len()];
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(err)?
            .label(label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    legend(&mut chart, SeriesLabelPosition::LowerRight)?;
    root.present().map_err(err)
}

/// Bytes per node per second against N (log-log), one line per system.
pub(crate) fn bytes_vs_n(path: &Path, title: &str, series: &[(String, Vec<(f64, f64)>)]) -> Result<()> {
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let points = || series.iter().flat_map(|(_, v)| v.iter().copied());
    let x_max = points().map(|p| p.0).fold(10.0, f64::max) * 1.5;
    let x_min = points().map(|p| p.0).fold(x_max, f64::min).max(1.0) / 1.5;
    let y_max = points().map(|p| p.1).fold(10.0, f64::max) * 2.0;
    let y_min = points().map(|p| p.1).fold(y_max, f64::min).max(1.0) / 2.0;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d((x_min..x_max).log_scale(), (y_min..y_max).log_scale())
        .map_err(err)?;
    chart.configure_mesh().x_desc("nodes (N)").y_desc("bytes per node per second").draw().map_err(err)?;
    for (k, (label, values)) in series.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        chart
            .draw_series(LineSeries::new(values.clone(), color.stroke_width(2)))
            .map_err(err)?
            .label(label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart.draw_series(values.iter().map(|&p| Circle::new(p, 4, color.filled()))).map_err(err)?;
    }
    legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
    root.present().map_err(err)
}
