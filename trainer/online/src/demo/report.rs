//! The demo's report: online metrics per simulated day and arm over the seeds, the A/B lift of
//! each arm over slow only ([`ab`](super::ab)), as a Markdown table (printed), JSON and an SVG
//! line chart with the spread (`eval::chart::write_lines`).

use std::path::Path;

use serde::Serialize;

use super::ab::{paired_lift, Counts, Lift, Spread, Stratum, RESAMPLES};
use super::devices::Visit;
use super::metrics::ctr;
use crate::error::Result;
use slowfast_data::{output, FileError};
use slowfast_trainer::arms::Arm;
use slowfast_trainer::eval::chart::{write_lines, LinePanel};

/// A chart panel: its title and the metric it plots.
type Panel = (&'static str, fn(&Summary) -> Spread);

/// Sums over the visits of one arm and day.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Tally {
    pub visits: usize,
    pub shown: usize,
    pub clicks: usize,
    ndcg_sum: f64,
    /// Items that arrived after the initial training, in the feeds and shown.
    pub new_in_feed: usize,
    pub new_shown: usize,
}

impl Tally {
    pub fn add(&mut self, v: &Visit) {
        self.visits += 1;
        self.shown += v.shown;
        self.clicks += v.clicks;
        self.ndcg_sum += v.ndcg10;
        self.new_in_feed += v.new_in_feed;
        self.new_shown += v.new_shown;
    }

    pub fn merge(&mut self, other: &Tally) {
        self.visits += other.visits;
        self.shown += other.shown;
        self.clicks += other.clicks;
        self.ndcg_sum += other.ndcg_sum;
        self.new_in_feed += other.new_in_feed;
        self.new_shown += other.new_shown;
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

/// One seed's run: every arm's rows.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SeedRun {
    /// The seed of the world, its logged history, the training and the users' draws.
    pub seed: u64,
    /// One row per arm and day, in arm order then day order.
    pub days_rows: Vec<DayRow>,
    /// One row per arm over every day (`day` 0).
    pub overall: Vec<DayRow>,
}

/// Per user (in user order), one arm's counts on one day (`day` 0: every day) of one seed:
/// the units of the A/B statistics ([`ab`]).
#[derive(Clone, Debug, PartialEq)]
pub struct UserCounts {
    pub arm: Arm,
    pub day: usize,
    pub counts: Vec<Counts>,
}

impl UserCounts {
    /// The counts of every phone's tally.
    pub fn new(arm: Arm, day: usize, tallies: &[Tally]) -> UserCounts {
        let counts = tallies
            .iter()
            .map(|t| Counts {
                clicks: t.clicks as u64,
                shown: t.shown as u64,
            })
            .collect();
        UserCounts { arm, day, counts }
    }
}

/// One arm on one day (`day` 0: every day) over the seeds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    pub arm: String,
    pub day: usize,
    /// CTR@10 per seed: mean and standard deviation over the seeds.
    pub ctr10: Spread,
    pub ndcg10: Spread,
    /// CTR@10 relative to slow only, with its 95 % paired bootstrap interval; `None` for slow
    /// only itself (and where slow only had no click).
    pub lift: Option<Lift>,
}

/// Everything the demo measured online.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Online {
    pub devices: usize,
    pub days: usize,
    pub visits_per_day: usize,
    /// Items arriving in the world per simulated day.
    pub arrivals_per_day: usize,
    pub runs: Vec<SeedRun>,
    /// One row per day (in day order, then `day` 0) and arm (in arm order).
    pub summary: Vec<Summary>,
    /// One line per arm but slow only, over every day: its lift and whether it is significant.
    pub verdicts: Vec<String>,
}

impl Online {
    /// The report of the seeds' runs; `units` holds every seed's [`UserCounts`] (the seeds in
    /// the order of `runs`).
    pub fn new(
        shape: (usize, usize, usize, usize),
        runs: Vec<SeedRun>,
        units: &[Vec<UserCounts>],
    ) -> Online {
        let (devices, days, visits_per_day, arrivals_per_day) = shape;
        let arms: Vec<String> = runs
            .first()
            .map(|r| r.overall.iter().map(|o| o.arm.clone()).collect())
            .unwrap_or_default();
        let control = Arm::SlowOnly.name();
        let mut summary = Vec::new();
        for day in (1..=days).chain([0]) {
            for arm in &arms {
                let rows: Vec<&DayRow> = runs
                    .iter()
                    .flat_map(|r| r.days_rows.iter().chain(&r.overall))
                    .filter(|r| &r.arm == arm && r.day == day)
                    .collect();
                let spread = |f: fn(&DayRow) -> f64| {
                    Spread::of(&rows.iter().map(|r| f(r)).collect::<Vec<_>>())
                };
                let strata: Vec<Stratum> = units
                    .iter()
                    .filter_map(|seed| {
                        let of =
                            |name: &str| seed.iter().find(|u| u.arm.name() == name && u.day == day);
                        let (t, c) = (of(arm)?, of(control)?);
                        Some(
                            t.counts
                                .iter()
                                .copied()
                                .zip(c.counts.iter().copied())
                                .collect(),
                        )
                    })
                    .collect();
                let lift = (arm != control)
                    .then(|| paired_lift(&strata, RESAMPLES, day as u64))
                    .flatten();
                summary.push(Summary {
                    arm: arm.clone(),
                    day,
                    ctr10: spread(|r| r.ctr10),
                    ndcg10: spread(|r| r.ndcg10),
                    lift,
                });
            }
        }
        let verdicts = summary
            .iter()
            .filter(|s| s.day == 0)
            .filter_map(|s| {
                let l = s.lift?;
                let sig = if l.significant() {
                    "significant"
                } else {
                    "not significant"
                };
                Some(format!(
                    "{}: {} CTR@10 over slow only, {sig} (95 % interval)",
                    s.arm,
                    l.describe()
                ))
            })
            .collect();
        Online {
            devices,
            days,
            visits_per_day,
            arrivals_per_day,
            runs,
            summary,
            verdicts,
        }
    }

    /// The table of `docs/results/demo.md`: per day and arm, then every day together, mean ±
    /// sd over the seeds and the lift over slow only; then the verdicts. Nights whose round of
    /// Algorithm 1 changed no weight (none of its fits beat the weights it started from on
    /// validation, [`slowfast_trainer::models::train::fit`]) are counted below it.
    pub fn markdown(&self) -> String {
        let seeds: Vec<String> = self.runs.iter().map(|r| r.seed.to_string()).collect();
        let mut s = format!(
            "Online A/B: {} seed(s) ({}) × {} devices, {} simulated days of {} visits, {} new \
             items a day; mean ± sd over the seeds; lift: CTR@10 relative to slow only, 95 % \
             paired bootstrap interval over users within seeds ({RESAMPLES} resamples)\n\n\
             | day | arm | CTR@10 | NDCG@10 | CTR@10 lift vs slow only |\n|---|---|---|---|---|\n",
            self.runs.len(),
            seeds.join(", "),
            self.devices,
            self.days,
            self.visits_per_day,
            self.arrivals_per_day,
        );
        for r in &self.summary {
            let day = if r.day == 0 {
                "all".to_owned()
            } else {
                r.day.to_string()
            };
            let lift = r.lift.map_or("—".to_owned(), |l| l.describe());
            s += &format!(
                "| {day} | {} | {:.4} ± {:.4} | {:.4} ± {:.4} | {lift} |\n",
                r.arm, r.ctr10.mean, r.ctr10.sd, r.ndcg10.mean, r.ndcg10.sd
            );
        }
        if !self.verdicts.is_empty() {
            s += "\nVerdict over every day:\n\n";
            for v in &self.verdicts {
                s += &format!("- {v}\n");
            }
        }
        let (kept, nights) = self.unchanged_nights();
        if kept > 0 {
            s += &format!(
                "\n{kept} of {nights} nightly rounds kept the weights they started from: none \
                 of their fits beat them on validation NDCG@10.\n"
            );
        }
        s
    }

    /// Nights (arm × seed × day after the first) whose model version is the day before's, and
    /// all nights.
    fn unchanged_nights(&self) -> (usize, usize) {
        let mut kept = 0;
        let mut nights = 0;
        for run in &self.runs {
            for r in run.days_rows.iter().filter(|r| r.day > 1) {
                nights += 1;
                kept += usize::from(run.days_rows.iter().any(|p| {
                    p.arm == r.arm && p.day + 1 == r.day && p.model_version == r.model_version
                }));
            }
        }
        (kept, nights)
    }

    /// Writes `online.json`, `online.md` and `online.svg` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| FileError::new(dir, e))?;
        output::write_json(&dir.join("online.json"), "online metrics", self)?;
        output::write_text(&dir.join("online.md"), &self.markdown())?;
        Ok(write_lines(
            &self.panels(),
            (1200, 440),
            &dir.join("online.svg"),
        )?)
    }

    /// Per-day CTR@10 and NDCG@10 per arm: the mean over the seeds, with ± sd bars.
    fn panels(&self) -> Vec<LinePanel> {
        let metrics: [Panel; 2] = [
            ("CTR@10 per simulated day (mean ± sd over seeds)", |s| {
                s.ctr10
            }),
            ("NDCG@10 vs planted preferences", |s| s.ndcg10),
        ];
        let arms: Vec<&str> = (self.summary.iter())
            .filter(|s| s.day == 0)
            .map(|s| s.arm.as_str())
            .collect();
        metrics
            .iter()
            .map(|(title, value)| {
                let per_arm = |arm: &str| -> Vec<(f64, Spread)> {
                    (self.summary.iter())
                        .filter(|s| s.arm == arm && s.day > 0)
                        .map(|s| (s.day as f64, value(s)))
                        .collect()
                };
                LinePanel {
                    title: (*title).to_owned(),
                    x_desc: "day".into(),
                    series: (arms.iter())
                        .map(|&a| {
                            let p = per_arm(a).iter().map(|(x, v)| (*x, v.mean)).collect();
                            (a.to_owned(), p)
                        })
                        .collect(),
                    error: (arms.iter())
                        .map(|&a| per_arm(a).iter().map(|(_, v)| v.sd).collect())
                        .collect(),
                }
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
            ..Visit::default()
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

    /// One seed where each of `users` users clicks `slow` (slow only) or `mc2sf` (MC²-SF) of
    /// 10 items shown per day, with the model version `v{day}` or `v1` throughout.
    fn seed_run(seed: u64, slow: usize, mc2sf: usize, same: bool) -> (SeedRun, Vec<UserCounts>) {
        let (users, days) = (4, 2);
        let mut run = SeedRun {
            seed,
            ..SeedRun::default()
        };
        let mut units = Vec::new();
        for (arm, clicks) in [(Arm::SlowOnly, slow), (Arm::Mc2sf, mc2sf)] {
            let mut t = Tally::default();
            t.add(&visit(10, clicks, 0.5));
            let tallies = vec![t; users];
            let mut all = Tally::default();
            for day in 1..=days {
                let version = if same { "v1".into() } else { format!("v{day}") };
                let mut sum = Tally::default();
                tallies.iter().for_each(|t| sum.merge(t));
                run.days_rows.push(DayRow::new(arm, day, &version, &sum));
                units.push(UserCounts::new(arm, day, &tallies));
                all.merge(&sum);
            }
            run.overall.push(DayRow::new(arm, 0, "v2", &all));
            let twice: Vec<Tally> = tallies
                .iter()
                .map(|t| {
                    let mut d = *t;
                    d.merge(t);
                    d
                })
                .collect();
            units.push(UserCounts::new(arm, 0, &twice));
        }
        (run, units)
    }

    #[test]
    fn report_gives_spread_over_seeds_lifts_and_verdicts_as_table_json_and_chart() {
        // Seed 1: 2 vs 3 clicks of 10 (+50 %); seed 2: 2 vs 2 (0 %). Pooled: 5/4 − 1 = +25 %.
        let (a, ua) = seed_run(1, 2, 3, false);
        let (b, ub) = seed_run(2, 2, 2, true);
        let online = Online::new((4, 2, 1, 50), vec![a, b], &[ua, ub]);
        assert_eq!(online.summary.len(), 2 * 3);
        let all = &online.summary[4..];
        assert_eq!((all[0].day, all[0].arm.as_str()), (0, "slow only"));
        assert_eq!(all[0].lift, None);
        let m = &all[1];
        assert!((m.ctr10.mean - 0.25).abs() < 1e-12, "{m:?}");
        assert!((m.ctr10.sd - 0.05f64.hypot(0.05)).abs() < 1e-12, "{m:?}");
        let lift = m.lift.unwrap();
        assert!((lift.lift - 0.25).abs() < 1e-12, "{lift:?}");
        // Every user of a seed is alike, so resampling users cannot move the lift.
        assert!((lift.lo - 0.25).abs() < 1e-12 && (lift.hi - 0.25).abs() < 1e-12);
        assert_eq!(
            online.verdicts,
            ["MC²-SF: +25.0 % [+25.0 %, +25.0 %] CTR@10 over slow only, significant (95 % interval)"]
        );
        let md = online.markdown();
        assert!(
            md.contains("| 1 | slow only | 0.2000 ± 0.0000 | 0.5000 ± 0.0000 | — |"),
            "{md}"
        );
        assert!(md.contains("| all | MC²-SF | 0.2500 ± 0.0707 |"), "{md}");
        assert!(md.contains("- MC²-SF: +25.0 %"), "{md}");
        assert!(
            md.contains("2 of 4 nightly rounds kept the weights"),
            "{md}"
        );
        let dir = tempfile::tempdir().unwrap();
        online.write(dir.path()).unwrap();
        let svg = std::fs::read_to_string(dir.path().join("online.svg")).unwrap();
        assert!(svg.contains("CTR@10 per simulated day") && svg.contains("MC²-SF"));
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("online.json")).unwrap())
                .unwrap();
        assert_eq!(json["runs"][0]["days_rows"][1]["model_version"], "v2");
        assert_eq!(json["summary"][5]["lift"]["lift"], 0.25);
    }
}
