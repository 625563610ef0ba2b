//! Training curves: each fit's training loss and validation NDCG@10 per epoch, as an SVG with
//! two panels (plotters' SVG backend) and as JSON.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::chart::{write_lines, LinePanel};
use crate::error::Result;
use crate::models::slowfast::TrainLog;
use crate::models::train::EpochLog;
use slowfast_data::output;

/// One fit's curve: `"<model> seed <s>: <fit>"` and its epochs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Curve {
    pub label: String,
    pub epochs: Vec<EpochLog>,
}

/// Flattens per-model training logs of one seed into labelled curves. A fit that tried
/// several learning rates (`models::train::fit`) gives one curve per rate, labelled with it.
pub fn curves(seed: u64, logs: &[(String, TrainLog)]) -> Vec<Curve> {
    logs.iter()
        .flat_map(|(model, log)| {
            log.fits.iter().flat_map(move |(fit, epochs)| {
                let label = if fit == model {
                    format!("{model} seed {seed}")
                } else {
                    format!("{model} seed {seed}: {fit}")
                };
                let runs: Vec<&[EpochLog]> = epochs.chunk_by(|a, b| a.lr == b.lr).collect();
                let several = runs.len() > 1;
                runs.into_iter().map(move |run| Curve {
                    label: match run.first() {
                        Some(e) if several => format!("{label} (lr {:e})", e.lr),
                        _ => label.clone(),
                    },
                    epochs: run.to_vec(),
                })
            })
        })
        .collect()
}

/// Writes `curves.json` and `curves.svg` into `dir`.
pub fn write(curves: &[Curve], dir: &Path) -> Result<()> {
    output::write_json(&dir.join("curves.json"), "training curves", &curves)?;
    draw(curves, &dir.join("curves.svg"))
}

/// A chart panel: its title and the value it plots per epoch.
type Panel = (&'static str, fn(&EpochLog) -> f64);

fn draw(curves: &[Curve], path: &Path) -> Result<()> {
    let panels: [Panel; 2] = [
        ("training loss (BCE)", |e| e.loss),
        ("validation NDCG@10", |e| e.valid_ndcg10),
    ];
    let panels: Vec<LinePanel> = panels
        .iter()
        .map(|(title, value)| LinePanel {
            title: (*title).to_owned(),
            x_desc: "epoch".into(),
            series: curves
                .iter()
                .map(|c| {
                    let points = c
                        .epochs
                        .iter()
                        .map(|e| (e.epoch as f64, value(e)))
                        .collect();
                    (c.label.clone(), points)
                })
                .collect(),
            error: Vec::new(),
        })
        .collect();
    write_lines(&panels, (1400, 420 + 16 * curves.len() as u32), path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curves_are_labelled_by_model_seed_and_fit_and_written() {
        let epoch = |epoch, loss| EpochLog {
            epoch,
            lr: 1e-3,
            loss,
            valid_ndcg10: 0.1 * epoch as f64,
            validation: Default::default(),
            samples_per_s: 1.0,
            train_s: 1.0,
            kept: false,
        };
        let logs = vec![
            (
                "MC2-SF".to_owned(),
                TrainLog {
                    fits: vec![
                        ("slow round 1".into(), vec![epoch(1, 0.7), epoch(2, 0.5)]),
                        ("fast round 1".into(), vec![epoch(1, 0.6)]),
                        (
                            "fast round 2".into(),
                            vec![
                                epoch(1, 0.6),
                                EpochLog {
                                    lr: 1e-2,
                                    ..epoch(1, 0.5)
                                },
                            ],
                        ),
                    ],
                },
            ),
            (
                "FM".to_owned(),
                TrainLog {
                    fits: vec![("FM".into(), vec![epoch(1, 0.69)])],
                },
            ),
        ];
        let c = curves(2, &logs);
        let labels: Vec<&str> = c.iter().map(|c| c.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "MC2-SF seed 2: slow round 1",
                "MC2-SF seed 2: fast round 1",
                "MC2-SF seed 2: fast round 2 (lr 1e-3)",
                "MC2-SF seed 2: fast round 2 (lr 1e-2)",
                "FM seed 2"
            ]
        );
        let dir = tempfile::tempdir().unwrap();
        write(&c, dir.path()).unwrap();
        let svg = std::fs::read_to_string(dir.path().join("curves.svg")).unwrap();
        assert!(svg.contains("validation NDCG@10") && svg.contains("FM seed 2"));
        let back: Vec<Curve> =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("curves.json")).unwrap())
                .unwrap();
        assert_eq!(back, c);
    }
}
