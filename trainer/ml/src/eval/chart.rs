//! SVG charts (plotters' SVG backend: no fonts or system libraries needed): a bar chart of
//! every metric per model, and line charts in side-by-side panels (training curves, the demo's
//! online metrics per day).

use std::path::Path;

use plotters::prelude::*;

use super::report::Results;
use crate::error::{Result, TrainerError};
use slowfast_data::protocol::metrics::COLUMNS;

/// Draws grouped bars: one group per metric (sampled, then full ranking), one bar (mean, with a ±std whisker) per model.
pub fn write_svg(results: &Results, path: &Path) -> Result<()> {
    draw(results, path).map_err(|e| TrainerError::Chart {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

fn draw(results: &Results, path: &Path) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let models: Vec<&String> = results.models.keys().collect();
    let width = 160 + 90 * COLUMNS.len() as u32 * (models.len() as u32).clamp(2, 8) / 2;
    let root = SVGBackend::new(path, (width.max(900), 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "{}: mean ± std over {} seed(s)",
                results.dataset,
                results.seeds.len()
            ),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(48)
        .build_cartesian_2d(0f64..COLUMNS.len() as f64, 0f64..1f64)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(COLUMNS.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - i as f64 - 0.5).abs() < 1e-6 && i < COLUMNS.len() {
                COLUMNS[i].name()
            } else {
                String::new()
            }
        })
        .y_desc("value")
        .draw()?;
    let bar = 0.8 / models.len().max(1) as f64;
    for (k, model) in models.iter().enumerate() {
        let color = Palette99::pick(k).to_rgba();
        let values: Vec<(f64, f64, f64)> = COLUMNS
            .iter()
            .enumerate()
            .filter_map(|(j, m)| {
                let v = results.models[*model].get(&m.name())?;
                Some((j as f64 + 0.1 + bar * k as f64, v.mean, v.std))
            })
            .collect();
        chart
            .draw_series(values.iter().map(|&(x, mean, _)| {
                Rectangle::new([(x, 0.0), (x + bar * 0.9, mean)], color.filled())
            }))?
            .label(model.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
        chart.draw_series(values.iter().map(|&(x, mean, std)| {
            let mid = x + bar * 0.45;
            PathElement::new(vec![(mid, mean - std), (mid, mean + std)], BLACK)
        }))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// One panel of a line chart: a title, the x axis name and labelled series of `(x, y)` points.
#[derive(Clone, Debug, PartialEq)]
pub struct LinePanel {
    pub title: String,
    pub x_desc: String,
    pub series: Vec<(String, Vec<(f64, f64)>)>,
    /// Per series, per point, the half-height of an error bar (`y ± e`) drawn at the point;
    /// empty (or shorter than the series) for no bars.
    pub error: Vec<Vec<f64>>,
}

/// Draws `panels` side by side into an SVG of `size` pixels, one line per series (series `k`
/// has the same colour in every panel); y runs from 0 to just above the largest value.
pub fn write_lines(panels: &[LinePanel], size: (u32, u32), path: &Path) -> Result<()> {
    draw_lines(panels, size, path).map_err(|e| TrainerError::Chart {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

fn draw_lines(
    panels: &[LinePanel],
    size: (u32, u32),
    path: &Path,
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE)?;
    let areas = root.split_evenly((1, panels.len().max(1)));
    for (area, panel) in areas.iter().zip(panels) {
        let points = || panel.series.iter().flat_map(|(_, p)| p.iter());
        let x_min = points().map(|p| p.0).fold(f64::INFINITY, f64::min);
        let x_min = if x_min.is_finite() { x_min } else { 0.0 };
        let x_max = points().map(|p| p.0).fold(x_min + 1.0, f64::max);
        let bars = |k: usize| -> Vec<(f64, f64, f64)> {
            let (Some((_, points)), Some(err)) = (panel.series.get(k), panel.error.get(k)) else {
                return Vec::new();
            };
            (points.iter().zip(err))
                .filter(|(p, e)| p.1.is_finite() && e.is_finite())
                .map(|(p, e)| (p.0, p.1 - e, p.1 + e))
                .collect()
        };
        let top = points()
            .map(|p| p.1)
            .chain((0..panel.series.len()).flat_map(|k| bars(k).into_iter().map(|b| b.2)))
            .filter(|v| v.is_finite())
            .fold(0.0f64, f64::max)
            .max(1e-3)
            * 1.05;
        let mut chart = ChartBuilder::on(area)
            .caption(&panel.title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(x_min..x_max, 0f64..top)?;
        chart.configure_mesh().x_desc(&panel.x_desc).draw()?;
        for (k, (label, points)) in panel.series.iter().enumerate() {
            let color = Palette99::pick(k).to_rgba();
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
                .label(label.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], color));
            chart.draw_series(bars(k).into_iter().map(|(x, lo, hi)| {
                ErrorBar::new_vertical(x, lo.max(0.0), (lo + hi) / 2.0, hi, color.filled(), 8)
            }))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 11))
            .draw()?;
    }
    root.present()?;
    Ok(())
}
