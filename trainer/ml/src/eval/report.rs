//! results.json and results.md: mean ± std over seeds per model and metric, in the layout of
//! the paper's Table 2 (metrics as rows, models as columns), with the paper's values beside
//! ours where the paper reports the data set, and the differences the report states with
//! their paired-bootstrap intervals (see [`super::bootstrap`]).

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::bootstrap::Interval;
use super::paper;
use crate::error::Result;
use slowfast_data::protocol::metrics::{Column, MeanStd, Metric, Ranking, COLUMNS, METRICS};
use slowfast_data::{output, FileError};

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
    /// Which cases are ranked in full, and against what (empty in results written before).
    #[serde(default)]
    pub full_ranking: String,
    /// How the stated differences' intervals are made (empty in results written before).
    #[serde(default)]
    pub significance: String,
    pub users: usize,
    pub items: usize,
    pub cases_per_seed: usize,
}

/// One model's metrics: metric name (`HR@1`, …, `full HR@10`, …) → mean ± std over seeds.
pub type ModelResult = IndexMap<String, MeanStd>;

/// The rows every other row is compared with in each column: MC²-SF and MC²-SF+ as the sampled
/// tables name them, and the MC²-SF arm as the re-rank protocol names it (the demo's name).
pub const REFERENCES: [&str; 3] = ["MC2-SF", "MC2-SF+", "MC²-SF"];

/// `mean(a) − mean(b)` in one column over every case of every seed, with its 95 % interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Difference {
    pub a: String,
    pub b: String,
    #[serde(flatten)]
    pub interval: Interval,
    /// Whether the interval excludes 0.
    pub significant: bool,
}

impl Difference {
    pub fn new(a: &str, b: &str, interval: Interval) -> Difference {
        Difference {
            a: a.to_owned(),
            b: b.to_owned(),
            interval,
            significant: interval.excludes_zero(),
        }
    }
}

/// The best and the runner-up of `means` (model, mean) by mean, the earlier model first on
/// ties; NaN means left out.
fn best_two<'a>(means: &[(&'a str, f64)]) -> Option<(&'a str, &'a str)> {
    let mut sorted: Vec<&(&str, f64)> = means.iter().filter(|(_, v)| !v.is_nan()).collect();
    sorted.sort_by(|x, y| y.1.total_cmp(&x.1));
    match sorted.as_slice() {
        [best, second, ..] => Some((best.0, second.0)),
        _ => None,
    }
}

/// The pairs `(a, b)` whose `a − b` the report states in a column with these `means` (model,
/// mean): the best row against the runner-up, then each of [`REFERENCES`] present against
/// every other row; each pair once.
pub fn stated_pairs<'a>(means: &[(&'a str, f64)]) -> Vec<(&'a str, &'a str)> {
    let mut pairs: Vec<(&str, &str)> = best_two(means).into_iter().collect();
    for reference in REFERENCES {
        let Some(&(a, _)) = means.iter().find(|(m, _)| *m == reference) else {
            continue;
        };
        for &(b, _) in means {
            if b != a && !pairs.contains(&(a, b)) {
                pairs.push((a, b));
            }
        }
    }
    pairs
}

/// A "Differences" section: each of [`REFERENCES`] among `models` minus every other row, in
/// the columns `names` that `differences` has, with the interval and whether it is significant.
pub fn differences_markdown(
    models: &[&str],
    differences: &IndexMap<String, Vec<Difference>>,
    names: &[String],
) -> String {
    let names: Vec<&String> = names
        .iter()
        .filter(|n| differences.contains_key(*n))
        .collect();
    let mut md = String::new();
    for reference in REFERENCES.iter().filter(|r| models.contains(r)) {
        if md.is_empty() {
            md += "\n## Differences\n\n`a − b` over every test case of every seed, with the 95 % \
                   paired-bootstrap interval over users [lo, hi]; significant when it excludes \
                   0.\n";
        }
        let _ = write!(
            md,
            "\n| {reference} − | {} |\n|---|{}\n",
            names
                .iter()
                .map(|n| n.as_str())
                .collect::<Vec<_>>()
                .join(" | "),
            "---|".repeat(names.len())
        );
        for other in models.iter().filter(|m| *m != reference) {
            let cells: Vec<String> = (names.iter())
                .map(|name| {
                    (differences[*name].iter())
                        .find(|d| d.a == *reference && d.b == *other)
                        .map_or_else(
                            || "–".to_owned(),
                            |d| {
                                let i = d.interval;
                                let yes = if d.significant { "yes" } else { "no" };
                                format!("{:+.4} [{:+.4}, {:+.4}] {yes}", i.diff, i.lo, i.hi)
                            },
                        )
                })
                .collect();
            let _ = writeln!(md, "| {other} | {} |", cells.join(" | "));
        }
    }
    md
}

/// The contents of results.json (names kept stable: later tools read them).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Results {
    pub dataset: String,
    pub protocol: Protocol,
    pub seeds: Vec<u64>,
    pub models: IndexMap<String, ModelResult>,
    /// Per column name, the differences the report states (see [`stated_pairs`]), each with
    /// its paired-bootstrap interval over users (empty in results written before).
    #[serde(default)]
    pub differences: IndexMap<String, Vec<Difference>>,
    /// The exact command that produced the file.
    #[serde(default)]
    pub command: String,
}

impl Results {
    /// Builds one model's entry from its per-seed column means (each in `COLUMNS` order, as
    /// many as it has), leaving out a column without cases (NaN or absent in every seed: no
    /// user ranked in full, or a protocol without full ranking).
    pub fn model_entry<R: AsRef<[f64]>>(per_seed: &[R]) -> ModelResult {
        let value = |s: &R, j: usize| s.as_ref().get(j).copied().unwrap_or(f64::NAN);
        COLUMNS
            .iter()
            .enumerate()
            .filter(|(j, _)| !per_seed.iter().all(|s| value(s, *j).is_nan()))
            .map(|(j, m)| {
                (
                    m.name(),
                    MeanStd::of(&per_seed.iter().map(|s| value(s, j)).collect::<Vec<_>>()),
                )
            })
            .collect()
    }

    /// Writes results.json and results.md into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        fs::create_dir_all(dir).map_err(|e| FileError::new(dir, e))?;
        output::write_json(&dir.join("results.json"), "results", self)?;
        Ok(output::write_text(
            &dir.join("results.md"),
            &self.markdown(),
        )?)
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
        md += &self.table(&COLUMNS, |model, column| {
            let v = self.models.get(model)?.get(&column.name())?;
            let cell = format!("{:.4} ± {:.4}", v.mean, v.std);
            Some(match self.lead(column) {
                Some((best, significant)) if best == model => {
                    format!("**{cell}**{}", if significant { " †" } else { "" })
                }
                _ => cell,
            })
        });
        md += "\n**Bold**: the best mean of the row; †: its lead over the runner-up is \
               significant (the 95 % paired-bootstrap interval over users excludes 0). \
               `full` rows rank the positive against the whole catalogue.\n";
        md += &self.differences_markdown();
        if paper::table(&self.dataset).is_some() {
            md += "\n## The paper's values (Table 2; Table 3 for Caser and SASRec)\n\n";
            md += &self.table(&COLUMNS[..METRICS.len()], |model, column| {
                let j = METRICS.iter().position(|m| *m == column.metric)?;
                paper::value(&self.dataset, model, j).map(|v| format!("{v:.4}"))
            });
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
            ("full ranking", self.protocol.full_ranking.clone()),
            ("significance", self.protocol.significance.clone()),
        ] {
            if v.is_empty() {
                continue;
            }
            let _ = writeln!(md, "- **{k}**: {v}");
        }
        md
    }

    /// The best model of `column` (of two or more) and whether the differences state its
    /// lead over the runner-up as significant.
    fn lead(&self, column: &Column) -> Option<(&str, bool)> {
        let means: Vec<(&str, f64)> = (self.models.iter())
            .filter_map(|(m, r)| Some((m.as_str(), r.get(&column.name())?.mean)))
            .collect();
        let (best, second) = best_two(&means)?;
        let significant = (self.differences.get(&column.name()).into_iter().flatten())
            .any(|d| d.a == best && d.b == second && d.significant);
        Some((best, significant))
    }

    /// The "Differences" section: each of [`REFERENCES`] minus every other row on HR@10 and
    /// NDCG@10, sampled and full, with the interval and whether it is significant.
    fn differences_markdown(&self) -> String {
        let names: Vec<String> = (COLUMNS.iter())
            .filter(|c| matches!(c.metric, Metric::Hr(10) | Metric::Ndcg(10)))
            .map(|c| c.name())
            .collect();
        let models: Vec<&str> = self.models.keys().map(String::as_str).collect();
        differences_markdown(&models, &self.differences, &names)
    }

    /// A columns × models table with cells from `cell(model, column)`.
    fn table(&self, columns: &[Column], cell: impl Fn(&str, &Column) -> Option<String>) -> String {
        let models: Vec<&str> = self.models.keys().map(String::as_str).collect();
        let mut t = format!(
            "| Metric | {} |\n|---|{}\n",
            models.join(" | "),
            "---|".repeat(models.len())
        );
        for column in columns {
            if column.ranking == Ranking::Full
                && !(self.models.values()).any(|r| r.contains_key(&column.name()))
            {
                continue;
            }
            let cells: Vec<String> = models
                .iter()
                .map(|m| cell(m, column).unwrap_or_else(|| "–".into()))
                .collect();
            let _ = writeln!(t, "| {} | {} |", column.name(), cells.join(" | "));
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interval(diff: f64, lo: f64, hi: f64) -> Interval {
        Interval { diff, lo, hi }
    }

    fn sample() -> Results {
        let mut models = IndexMap::new();
        models.insert(
            "Random".to_owned(),
            Results::model_entry(&[[0.01, 0.05, 0.1, 0.03, 0.05, 0.05, 0.004, 0.002]; 2]),
        );
        models.insert(
            "DIN".to_owned(),
            Results::model_entry(&[
                [0.5, 0.6, 0.7, 0.55, 0.6, 0.5, 0.2, 0.1],
                [0.6, 0.6, 0.7, 0.55, 0.6, 0.5, 0.2, 0.1],
            ]),
        );
        models.insert(
            "MC2-SF".to_owned(),
            Results::model_entry(&[[0.6, 0.7, 0.72, 0.6, 0.62, 0.55, 0.19, 0.12]; 2]),
        );
        let mut differences = IndexMap::new();
        differences.insert(
            "HR@10".to_owned(),
            vec![
                Difference::new("MC2-SF", "DIN", interval(0.02, -0.001, 0.04)),
                Difference::new("MC2-SF", "Random", interval(0.62, 0.6, 0.64)),
            ],
        );
        differences.insert(
            "NDCG@10".to_owned(),
            vec![
                Difference::new("MC2-SF", "DIN", interval(0.02, 0.01, 0.03)),
                Difference::new("MC2-SF", "Random", interval(0.57, 0.55, 0.59)),
            ],
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
                full_ranking: "f".into(),
                significance: "b".into(),
                users: 3,
                items: 4,
                cases_per_seed: 15,
            },
            seeds: vec![1, 2],
            models,
            differences,
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
        // In the protocol's column order (which its own test pins).
        let columns: Vec<String> = COLUMNS.iter().map(|c| c.name()).collect();
        assert_eq!(keys, columns);
        assert_eq!(
            v["differences"]["HR@10"][0],
            serde_json::json!({
                "a": "MC2-SF", "b": "DIN", "diff": 0.02, "lo": -0.001, "hi": 0.04,
                "significant": false
            })
        );
        let back: Results = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn columns_without_cases_are_left_out() {
        let entry = Results::model_entry(&[[0.5, 0.6, 0.7, 0.55, 0.6, 0.5, f64::NAN, f64::NAN]]);
        assert_eq!(entry.len(), METRICS.len());
        assert!(!entry.contains_key("full HR@10"));
    }

    #[test]
    fn markdown_is_table_two_layout_with_paper_values() {
        let md = sample().markdown();
        assert!(md.contains("| Metric | Random | DIN | MC2-SF |"), "{md}");
        assert!(
            md.contains("| HR@1 | 0.0100 ± 0.0000 | 0.5500 ± 0.0707 | **0.6000 ± 0.0000** |"),
            "{md}"
        );
        assert!(
            md.contains("| full HR@10 | 0.0040 ± 0.0000 | **0.2000 ± 0.0000** | 0.1900 ± 0.0000 |"),
            "{md}"
        );
        assert!(
            md.contains("| HR@1 | – | 0.5505 | 0.6105 |"),
            "paper's values beside ours:\n{md}"
        );
        assert!(
            !md.contains("| full HR@10 | – |"),
            "the paper has no full ranking:\n{md}"
        );
        assert!(md.contains("- **training**: t\n"), "{md}");
        assert!(md.contains("- **significance**: b\n"), "{md}");
    }

    /// The best value of a row is bold, with † only where the stated difference to the
    /// runner-up excludes 0.
    #[test]
    fn the_best_of_each_row_is_marked_and_its_significance_shown() {
        let md = sample().markdown();
        let row = |name: &str| {
            let prefix = format!("| {name} |");
            md.lines()
                .find(|l| l.starts_with(&prefix))
                .unwrap()
                .to_owned()
        };
        assert!(
            row("HR@10").ends_with("| **0.7200 ± 0.0000** |"),
            "not significant: {md}"
        );
        assert!(
            row("NDCG@10").ends_with("| **0.6200 ± 0.0000** † |"),
            "{md}"
        );
        assert!(
            row("full HR@10").contains("| **0.2000 ± 0.0000** |"),
            "DIN leads: {md}"
        );
    }

    #[test]
    fn differences_table_has_the_reference_minus_every_row() {
        let md = sample().markdown();
        assert!(md.contains("## Differences"), "{md}");
        assert!(
            md.contains("| MC2-SF − | HR@10 | NDCG@10 |\n|---|---|---|\n"),
            "{md}"
        );
        assert!(
            md.contains("| DIN | +0.0200 [-0.0010, +0.0400] no | +0.0200 [+0.0100, +0.0300] yes |"),
            "{md}"
        );
        assert!(
            md.contains("| Random | +0.6200 [+0.6000, +0.6400] yes |"),
            "{md}"
        );
        let mut without = sample();
        without.models.shift_remove("MC2-SF");
        assert!(!without.markdown().contains("## Differences"));
    }

    #[test]
    fn stated_pairs_are_the_lead_and_each_reference_against_every_row() {
        let means = [("A", 0.5), ("MC2-SF", 0.4), ("B", 0.45), ("MC2-SF+", 0.3)];
        assert_eq!(
            stated_pairs(&means),
            [
                ("A", "B"),
                ("MC2-SF", "A"),
                ("MC2-SF", "B"),
                ("MC2-SF", "MC2-SF+"),
                ("MC2-SF+", "A"),
                ("MC2-SF+", "MC2-SF"),
                ("MC2-SF+", "B"),
            ]
        );
        // A reference that leads is stated once; one row alone states nothing.
        let means = [("MC2-SF", 0.5), ("B", 0.4), ("C", f64::NAN)];
        assert_eq!(stated_pairs(&means), [("MC2-SF", "B"), ("MC2-SF", "C")]);
        assert!(stated_pairs(&[("B", 0.4)]).is_empty());
    }

    /// results.json written before a protocol field was recorded still loads, the field
    /// empty, and its markdown leaves the line out.
    #[test]
    fn older_results_load_without_the_later_fields() {
        let mut v = serde_json::to_value(sample()).unwrap();
        let protocol = v["protocol"].as_object_mut().unwrap();
        for field in ["training", "validation", "full_ranking", "significance"] {
            protocol.remove(field);
        }
        v.as_object_mut().unwrap().remove("differences");
        let old: Results = serde_json::from_value(v).unwrap();
        assert_eq!(old.protocol.training, "");
        assert!(old.differences.is_empty());
        let md = old.markdown();
        for field in ["training", "validation", "full ranking", "significance"] {
            assert!(!md.contains(&format!("**{field}**")), "{md}");
        }
        assert!(md.contains("- **ties**: pessimistic"), "{md}");
        assert!(!md.contains("** †"), "{md}");
    }
}
