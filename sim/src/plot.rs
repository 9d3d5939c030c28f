//! `--plot FILE.svg`: membership over time (live-member counts seen by the
//! nodes against the true count) and failure detection (cumulative
//! `MemberDown` events, distinct views).

use plotters::prelude::*;

use crate::report::Report;

/// The plot could not be drawn or written.
#[derive(Debug, thiserror::Error)]
#[error("plot: {0}")]
pub struct PlotError(String);

fn err(e: impl std::fmt::Display) -> PlotError {
    PlotError(e.to_string())
}

/// Draws `report`'s samples to an SVG file at `path`.
pub fn write_svg(report: &Report, path: &std::path::Path) -> Result<(), PlotError> {
    let samples = &report.samples;
    let root = SVGBackend::new(path, (1000, 700)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (top, bottom) = root.split_vertically(400);
    let t_max = samples.last().map_or(1.0, |s| s.t).max(1.0);
    let y_max = samples.iter().map(|s| s.live_max.max(s.running as f64)).fold(1.0, f64::max) * 1.05;
    let mut chart = ChartBuilder::on(&top)
        .caption(
            format!("{}: {} nodes, seed {} - live members seen per node", report.scenario, report.nodes, report.seed),
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..t_max, 0.0..y_max)
        .map_err(err)?;
    chart.configure_mesh().x_desc("seconds").y_desc("members").draw().map_err(err)?;
    type Series = (&'static str, RGBColor, fn(&crate::report::Sample) -> f64);
    let series: [Series; 4] = [
        ("running (truth)", BLACK, |s| s.running as f64),
        ("min seen", RED, |s| s.live_min),
        ("mean seen", BLUE, |s| s.live_mean),
        ("max seen", GREEN, |s| s.live_max),
    ];
    for (label, color, value) in series {
        chart
            .draw_series(LineSeries::new(samples.iter().map(|s| (s.t, value(s))), color.stroke_width(2)))
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(err)?;

    let dead_max = samples.iter().map(|s| s.dead_events as f64).fold(1.0, f64::max) * 1.05;
    let views_max = samples
        .iter()
        .map(|s| s.distinct_views.max(s.running - s.exact_views.min(s.running)) as f64)
        .fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(&bottom)
        .caption("failure detection: MemberDown events (cumulative); nodes with a wrong live count", ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .right_y_label_area_size(50)
        .build_cartesian_2d(0.0..t_max, 0.0..dead_max)
        .map_err(err)?
        .set_secondary_coord(0.0..t_max, 0.0..views_max * 1.05);
    chart.configure_mesh().x_desc("seconds").y_desc("MemberDown events").draw().map_err(err)?;
    chart.configure_secondary_axes().y_desc("nodes").draw().map_err(err)?;
    chart
        .draw_series(LineSeries::new(samples.iter().map(|s| (s.t, s.dead_events as f64)), RED.stroke_width(2)))
        .map_err(err)?
        .label("MemberDown events")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    chart
        .draw_secondary_series(LineSeries::new(
            samples.iter().map(|s| (s.t, (s.running - s.exact_views.min(s.running)) as f64)),
            BLUE.stroke_width(2),
        ))
        .map_err(err)?
        .label("nodes with a wrong live count")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// One run's coordinate accuracy over time: (label, seconds, median, p95).
pub type AccuracySeries<'a> = (&'a str, Vec<f64>, Vec<f64>, Vec<f64>);

/// Draws the relative error of estimated round trips over time (median solid,
/// p95 dashed), one colour per run, to an SVG file at `path`.
pub fn write_coordinates_svg(
    runs: &[AccuracySeries<'_>],
    path: &std::path::Path,
    title: &str,
) -> Result<(), PlotError> {
    let root = SVGBackend::new(path, (1000, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let t_max = runs.iter().flat_map(|r| r.1.iter().copied()).fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("network coordinates: relative RTT error, {title}"), ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..t_max, (0.01f64..10.0f64).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("seconds after the last node started")
        .y_desc("|estimate - truth| / truth")
        .draw()
        .map_err(err)?;
    let colors = [BLUE, RED, GREEN, MAGENTA];
    let clamp = |y: f64| y.clamp(0.01, 10.0);
    for (index, (label, t, median, p95)) in runs.iter().enumerate() {
        let color = colors[index % colors.len()];
        chart
            .draw_series(LineSeries::new(t.iter().zip(median).map(|(x, y)| (*x, clamp(*y))), color.stroke_width(2)))
            .map_err(err)?
            .label(format!("{label}: median"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart
            .draw_series(DashedLineSeries::new(
                t.iter().zip(p95).map(|(x, y)| (*x, clamp(*y))),
                6,
                4,
                color.stroke_width(1),
            ))
            .map_err(err)?
            .label(format!("{label}: p95"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    for (bound, label) in [(0.15, "median bound 0.15"), (0.5, "p95 bound 0.5")] {
        chart
            .draw_series(DashedLineSeries::new([(0.0, bound), (t_max, bound)], 2, 4, BLACK.stroke_width(1)))
            .map_err(err)?
            .label(label)
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}
