//! The demo's report: online metrics per simulated day and arm, as a Markdown table (printed),
//! JSON and an SVG line chart (`eval::chart::write_lines`).

use std::path::Path;

use serde::Serialize;

use super::arms::Arm;
use super::devices::Visit;
use super::metrics::ctr;
use crate::error::{Result, TrainerError};
use crate::eval::chart::{write_lines, LinePanel};

/// A chart panel: its title and the metric it plots.
type Panel = (&'static str, fn(&DayRow) -> f64);

/// Sums over the visits of one arm and day.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Tally {
    pub visits: usize,
    pub shown: usize,
    pub clicks: usize,
    ndcg_sum: f64,
}

impl Tally {
    pub fn add(&mut self, v: &Visit) {
        self.visits += 1;
        self.shown += v.shown;
        self.clicks += v.clicks;
        self.ndcg_sum += v.ndcg10;
    }

    pub fn merge(&mut self, other: &Tally) {
        self.visits += other.visits;
        self.shown += other.shown;
        self.clicks += other.clicks;
        self.ndcg_sum += other.ndcg_sum;
    }

    /// CTR@10 over every item shown.
    pub fn ctr10(&self) -> f64 {
        ctr(self.clicks, self.shown)
    }

    /// NDCG@10 averaged over visits.
    pub fn ndcg10(&self) -> f64 {
        if self.visits == 0 {
            0.0
        } else {
            self.ndcg_sum / self.visits as f64
        }
    }
}

/// One arm on one simulated day (`day` 0: every day together).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DayRow {
    pub arm: String,
    pub day: usize,
    /// The model version the devices ran that day.
    pub model_version: String,
    pub visits: usize,
    pub shown: usize,
    pub clicks: usize,
    pub ctr10: f64,
    pub ndcg10: f64,
}

impl DayRow {
    pub fn new(arm: Arm, day: usize, model_version: &str, t: &Tally) -> DayRow {
        DayRow {
            arm: arm.name().to_owned(),
            day,
            model_version: model_version.to_owned(),
            visits: t.visits,
            shown: t.shown,
            clicks: t.clicks,
            ctr10: t.ctr10(),
            ndcg10: t.ndcg10(),
        }
    }
}

/// Everything the demo measured online.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Online {
    pub devices: usize,
    pub days: usize,
    pub visits_per_day: usize,
    /// One row per arm and day, in arm order then day order.
    pub days_rows: Vec<DayRow>,
    /// One row per arm over every day (`day` 0).
    pub overall: Vec<DayRow>,
}

impl Online {
    /// The table of `docs/results/demo.md`: per day and arm, then every day together. A day whose model
    /// version is the day before's is marked: that night's round of Algorithm 1 changed no
    /// weight, because none of its fits beat the weights it started from on validation
    /// ([`crate::models::train::fit`]), and the server kept serving the same model.
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "Online metrics: {} devices, {} simulated days of {} visits each\n\n\
             | day | arm | model version | CTR@10 | NDCG@10 |\n|---|---|---|---|---|\n",
            self.devices, self.days, self.visits_per_day
        );
        let unchanged = |r: &DayRow| {
            (self.days_rows.iter())
                .any(|p| p.arm == r.arm && p.day + 1 == r.day && p.model_version == r.model_version)
        };
        let mut rows: Vec<&DayRow> = self.days_rows.iter().collect();
        rows.sort_by_key(|r| r.day);
        let mut kept = false;
        for r in rows.into_iter().chain(&self.overall) {
            let day = if r.day == 0 {
                "all".to_owned()
            } else {
                r.day.to_string()
            };
            let mark = if r.day > 1 && unchanged(r) {
                kept = true;
                " (unchanged)"
            } else {
                ""
            };
            s += &format!(
                "| {day} | {} | {}{mark} | {:.4} | {:.4} |\n",
                r.arm, r.model_version, r.ctr10, r.ndcg10
            );
        }
        if kept {
            s += "\n(unchanged): the night before's round of Algorithm 1 kept the weights it \
                  started from, because none of its fits beat them on validation NDCG@10.\n";
        }
        s
    }

    /// Writes `online.json`, `online.md` and `online.svg` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| TrainerError::io(dir, e))?;
        let json = serde_json::to_string_pretty(self).map_err(|source| TrainerError::Json {
            what: "online metrics".into(),
            source,
        })?;
        for (name, text) in [("online.json", json + "\n"), ("online.md", self.markdown())] {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|e| TrainerError::io(&path, e))?;
        }
        write_lines(&self.panels(), (1200, 440), &dir.join("online.svg"))
    }

    fn panels(&self) -> Vec<LinePanel> {
        let metrics: [Panel; 2] = [
            ("CTR@10 per simulated day", |r| r.ctr10),
            ("NDCG@10 vs planted preferences", |r| r.ndcg10),
        ];
        metrics
            .iter()
            .map(|(title, value)| LinePanel {
                title: (*title).to_owned(),
                x_desc: "day".into(),
                series: self
                    .overall
                    .iter()
                    .map(|o| {
                        let points = self
                            .days_rows
                            .iter()
                            .filter(|r| r.arm == o.arm)
                            .map(|r| (r.day as f64, value(r)))
                            .collect();
                        (o.arm.clone(), points)
                    })
                    .collect(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn visit(shown: usize, clicks: usize, ndcg10: f64) -> Visit {
        Visit {
            shown,
            clicks,
            ndcg10,
        }
    }

    #[test]
    fn tallies_pool_clicks_over_items_and_average_ndcg_over_visits() {
        let mut t = Tally::default();
        t.add(&visit(10, 3, 0.5));
        t.add(&visit(8, 1, 1.0));
        assert_eq!((t.visits, t.shown, t.clicks), (2, 18, 4));
        assert!((t.ctr10() - 4.0 / 18.0).abs() < 1e-12);
        assert!((t.ndcg10() - 0.75).abs() < 1e-12);
        let mut all = Tally::default();
        all.merge(&t);
        all.merge(&t);
        assert_eq!(all.visits, 4);
        assert!((all.ndcg10() - 0.75).abs() < 1e-12);
        assert_eq!(Tally::default().ndcg10(), 0.0);
    }

    #[test]
    fn report_is_written_as_table_json_and_chart() {
        let mut t = Tally::default();
        t.add(&visit(10, 2, 0.4));
        let online = Online {
            devices: 1,
            days: 2,
            visits_per_day: 1,
            days_rows: vec![
                DayRow::new(Arm::Mc2sf, 1, "v1", &t),
                DayRow::new(Arm::Mc2sf, 2, "v2", &t),
            ],
            overall: vec![DayRow::new(Arm::Mc2sf, 0, "v2", &t)],
        };
        let md = online.markdown();
        assert!(md.contains("| 2 | MC²-SF | v2 | 0.2000 | 0.4000 |"), "{md}");
        assert!(md.contains("| all | MC²-SF |"), "{md}");
        assert!(!md.contains("unchanged"), "{md}");
        let mut same = online.clone();
        same.days_rows[1].model_version = "v1".into();
        same.days_rows.push(DayRow::new(Arm::FastOnly, 1, "v1", &t));
        same.days_rows.push(DayRow::new(Arm::FastOnly, 2, "v3", &t));
        let md = same.markdown();
        assert!(md.contains("| 2 | MC²-SF | v1 (unchanged) |"), "{md}");
        assert!(md.contains("| 2 | fast only | v3 |"), "{md}");
        assert!(
            md.contains("| 1 | MC²-SF | v1 |"),
            "day 1 has no night before: {md}"
        );
        assert!(md.contains("kept the weights it started from"), "{md}");
        let dir = tempfile::tempdir().unwrap();
        online.write(dir.path()).unwrap();
        let svg = std::fs::read_to_string(dir.path().join("online.svg")).unwrap();
        assert!(svg.contains("CTR@10 per simulated day") && svg.contains("MC²-SF"));
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("online.json")).unwrap())
                .unwrap();
        assert_eq!(json["days_rows"][1]["model_version"], "v2");
    }
}
