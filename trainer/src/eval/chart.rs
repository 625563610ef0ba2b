//! An SVG bar chart of every metric per model (plotters' SVG backend: no fonts or system
//! libraries needed).

use std::path::Path;

use plotters::prelude::*;

use super::metrics::METRICS;
use super::report::Results;
use crate::error::{Result, TrainerError};

/// Draws grouped bars: one group per metric, one bar (mean, with a ±std whisker) per model.
pub fn write_svg(results: &Results, path: &Path) -> Result<()> {
    draw(results, path).map_err(|e| TrainerError::Chart {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

fn draw(results: &Results, path: &Path) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let models: Vec<&String> = results.models.keys().collect();
    let width = 160 + 90 * METRICS.len() as u32 * (models.len() as u32).clamp(2, 8) / 2;
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
        .build_cartesian_2d(0f64..METRICS.len() as f64, 0f64..1f64)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(METRICS.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - i as f64 - 0.5).abs() < 1e-6 && i < METRICS.len() {
                METRICS[i].name()
            } else {
                String::new()
            }
        })
        .y_desc("value")
        .draw()?;
    let bar = 0.8 / models.len().max(1) as f64;
    for (k, model) in models.iter().enumerate() {
        let color = Palette99::pick(k).to_rgba();
        let values: Vec<(f64, f64, f64)> = METRICS
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
