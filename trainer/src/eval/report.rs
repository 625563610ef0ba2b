//! results.json and results.md: mean ± std over seeds per model and metric, in the layout of
//! the paper's Table 2 (metrics as rows, models as columns), with the paper's values beside
//! ours where the paper reports the data set.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::metrics::{MeanStd, METRICS};
use super::paper;
use crate::error::{Result, TrainerError};

/// How the numbers were made; written into results.json so a reader never has to guess.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Protocol {
    pub min_interactions: usize,
    pub split: String,
    pub negatives: usize,
    pub negative_sampling: String,
    pub ties: String,
    pub slow_view: String,
    pub fast_view: String,
    /// Which clicks each row learns from (empty in results written before it was recorded).
    #[serde(default)]
    pub training: String,
    /// How fits stop early (empty in results written before it was recorded).
    #[serde(default)]
    pub validation: String,
    pub spread: String,
    pub users: usize,
    pub items: usize,
    pub cases_per_seed: usize,
}

/// One model's metrics: metric name (`HR@1`, …) → mean ± std over seeds.
pub type ModelResult = IndexMap<String, MeanStd>;

/// The contents of results.json (names kept stable: later tools read them).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Results {
    pub dataset: String,
    pub protocol: Protocol,
    pub seeds: Vec<u64>,
    pub models: IndexMap<String, ModelResult>,
    /// The exact command that produced the file.
    #[serde(default)]
    pub command: String,
}

impl Results {
    /// Builds one model's entry from its per-seed metric means (each in `METRICS` order).
    pub fn model_entry(per_seed: &[[f64; METRICS.len()]]) -> ModelResult {
        METRICS
            .iter()
            .enumerate()
            .map(|(j, m)| {
                (
                    m.name(),
                    MeanStd::of(&per_seed.iter().map(|s| s[j]).collect::<Vec<_>>()),
                )
            })
            .collect()
    }

    /// Writes results.json and results.md into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        fs::create_dir_all(dir).map_err(|e| TrainerError::io(dir, e))?;
        let json = serde_json::to_string_pretty(self).map_err(|source| TrainerError::Json {
            what: "results".into(),
            source,
        })?;
        let path = dir.join("results.json");
        fs::write(&path, json + "\n").map_err(|e| TrainerError::io(&path, e))?;
        let path = dir.join("results.md");
        fs::write(&path, self.markdown()).map_err(|e| TrainerError::io(&path, e))
    }

    /// The Markdown report: our table, then the paper's for the same models when it has them.
    pub fn markdown(&self) -> String {
        let mut md = format!("# Results: {}\n\n", self.dataset);
        let seeds: Vec<String> = self.seeds.iter().map(u64::to_string).collect();
        let _ = writeln!(
            md,
            "Mean ± sample std over {} seed(s) ({}); {} users, {} items, {} test cases per seed; \
             each positive ranked against {} sampled negatives, ties pessimistic.\n",
            self.seeds.len(),
            seeds.join(", "),
            self.protocol.users,
            self.protocol.items,
            self.protocol.cases_per_seed,
            self.protocol.negatives
        );
        if !self.command.is_empty() {
            let _ = writeln!(md, "Made by:\n\n```\n{}\n```\n", self.command);
        }
        md += &self.table(|model, j| {
            let v = self.models.get(model)?.get(&METRICS[j].name())?;
            Some(format!("{:.4} ± {:.4}", v.mean, v.std))
        });
        if paper::table(&self.dataset).is_some() {
            md += "\n## The paper's values (Table 2; Table 3 for Caser and SASRec)\n\n";
            md += &self
                .table(|model, j| paper::value(&self.dataset, model, j).map(|v| format!("{v:.4}")));
        }
        md += "\n## Protocol\n\n";
        for (k, v) in [
            (
                "filter",
                format!(
                    "users and items with < {} interactions dropped until stable",
                    self.protocol.min_interactions
                ),
            ),
            ("split", self.protocol.split.clone()),
            ("negatives", self.protocol.negative_sampling.clone()),
            ("ties", self.protocol.ties.clone()),
            ("slow models see", self.protocol.slow_view.clone()),
            ("fast models see", self.protocol.fast_view.clone()),
            ("training", self.protocol.training.clone()),
            ("validation", self.protocol.validation.clone()),
            ("spread", self.protocol.spread.clone()),
        ] {
            if v.is_empty() {
                continue;
            }
            let _ = writeln!(md, "- **{k}**: {v}");
        }
        md
    }

    /// A metrics × models table with cells from `cell(model, metric_index)`.
    fn table(&self, cell: impl Fn(&str, usize) -> Option<String>) -> String {
        let models: Vec<&str> = self.models.keys().map(String::as_str).collect();
        let mut t = format!(
            "| Metric | {} |\n|---|{}\n",
            models.join(" | "),
            "---|".repeat(models.len())
        );
        for (j, metric) in METRICS.iter().enumerate() {
            let cells: Vec<String> = models
                .iter()
                .map(|m| cell(m, j).unwrap_or_else(|| "–".into()))
                .collect();
            let _ = writeln!(t, "| {} | {} |", metric.name(), cells.join(" | "));
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Results {
        let mut models = IndexMap::new();
        models.insert(
            "Random".to_owned(),
            Results::model_entry(&[[0.01, 0.05, 0.1, 0.03, 0.05, 0.05]; 2]),
        );
        models.insert(
            "DIN".to_owned(),
            Results::model_entry(&[
                [0.5, 0.6, 0.7, 0.55, 0.6, 0.5],
                [0.6, 0.6, 0.7, 0.55, 0.6, 0.5],
            ]),
        );
        Results {
            dataset: "ML-1M (users 1–2998)".into(),
            protocol: Protocol {
                min_interactions: 20,
                split: "s".into(),
                negatives: 99,
                negative_sampling: "n".into(),
                ties: "pessimistic".into(),
                slow_view: "slow".into(),
                fast_view: "fast".into(),
                training: "t".into(),
                validation: "v".into(),
                spread: "sample std".into(),
                users: 3,
                items: 4,
                cases_per_seed: 15,
            },
            seeds: vec![1, 2],
            models,
            command: "slowfast eval".into(),
        }
    }

    #[test]
    fn json_has_the_stable_names_and_round_trips() {
        let r = sample();
        let v: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(v["models"]["DIN"]["HR@1"]["mean"].as_f64().unwrap(), 0.55);
        assert!((v["models"]["DIN"]["HR@1"]["std"].as_f64().unwrap() - 0.0707).abs() < 1e-3);
        let keys: Vec<_> = v["models"]["DIN"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(keys, ["HR@1", "HR@5", "HR@10", "NDCG@5", "NDCG@10", "MRR"]);
        let back: Results = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn markdown_is_table_two_layout_with_paper_values() {
        let md = sample().markdown();
        assert!(md.contains("| Metric | Random | DIN |"), "{md}");
        assert!(
            md.contains("| HR@1 | 0.0100 ± 0.0000 | 0.5500 ± 0.0707 |"),
            "{md}"
        );
        assert!(
            md.contains("| HR@1 | – | 0.5505 |"),
            "paper's DIN value beside ours:\n{md}"
        );
        assert!(md.contains("- **training**: t\n"), "{md}");
    }

    /// results.json written before a protocol field was recorded still loads, the field
    /// empty, and its markdown leaves the line out.
    #[test]
    fn older_results_load_without_the_later_protocol_fields() {
        let mut v = serde_json::to_value(sample()).unwrap();
        let protocol = v["protocol"].as_object_mut().unwrap();
        protocol.remove("training");
        protocol.remove("validation");
        let old: Results = serde_json::from_value(v).unwrap();
        assert_eq!(old.protocol.training, "");
        let md = old.markdown();
        assert!(
            !md.contains("**training**") && !md.contains("**validation**"),
            "{md}"
        );
        assert!(md.contains("- **ties**: pessimistic"), "{md}");
    }
}
