//! The re-rank protocol: every test click ranked within the feed the sync server would have
//! sent at that moment, as the phone sees it online (`slowfast eval --protocol rerank`).
//!
//! The sampled protocol ([`slowfast_data::protocol::sampler`], paper §5.1.2) ranks each test click against 99
//! uniformly drawn items. Online, the device re-ranks the server's feed instead: the top `K`
//! of a retrieval pool by the slow model. Here, for each seed, MC²-SF is trained with
//! Algorithm 1 (the zoo's `MC2-SF`, whose slow component is `DIN w/ F2S`) and each user's
//! feed is made the way `GET /v1/feed` makes it:
//!
//! 1. **The cloud's history.** The device uploads its clicks and exposures together with the
//!    negative memory `r̂2` (eq. 5) in one request, and the server ranks with every click it
//!    stored. The protocol's last upload before the test phase came at the end of the fast
//!    phase, so the cloud holds every event before the test phase ([`Query::uploaded`]):
//!    the slow and fast phases' clicks, and `r̂2` folded from their exposures. Test-phase
//!    events are not uploaded before a test click (a phone uploads once 50 events are
//!    pending, more than a test phase's five clicks and their exposures), so every test
//!    click of a user gets the same feed.
//! 2. **Retrieval.** [`retrieval::candidates`] over the trained item embeddings `e_i` and the
//!    training phases' click counts (the bundle's `items.json`, [`item_table`]) with the last
//!    `W_s` clicks of that history: a pool of `pool` items (`slowfast serve --pool`).
//! 3. **Ranking.** The slow component (eq. 5–6) scores the pool with the same history and
//!    `r̂2`; [`retrieval::feed_order`] keeps the top `K` (`GET /v1/feed?k=`, the demo's feed
//!    size).
//!
//! Each row then re-ranks the same `K` candidates, given the slow component's history and
//! `r̂2` as above and, on the device, every event before the target ([`View::RealTime`]):
//! the four online arms of the demo ([`Arm`]: slow only = the feed's order, fast only = the
//! fast component with zero priors `r_t = r_n = 0`, vanilla slow+fast = the slow logit plus
//! the zero-prior fast logit, MC²-SF = the fast component with the slow component's
//! `r_t, r_n`, eq. 7–8), then any model of the zoo by name. A test click whose item is not
//! in the feed is a **miss**: every metric 0 for that case. HR@1/5/10, NDCG@5/10 and MRR are
//! averaged over all test clicks (ties pessimistic, as the sampled protocol), mean ± sample
//! std over seeds, beside the feed's recall (test clicks whose item is in the feed; in the
//! pool before the cut at `K`). Every case's rank in every row is kept ([`SeedRanks`]).

use std::fmt::Write as _;
use std::path::Path;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::bootstrap::{self, Paired};
use super::report::{differences_markdown, stated_pairs, Difference, ModelResult, Results};
use crate::arms::Arm;
use crate::baselines::{Zoo, ZooConfig};
use crate::checkpoint::Vocabulary;
use crate::error::{Result, TrainerError};
use crate::export::bundle::item_table;
use crate::models::features::last_items;
use crate::models::slowfast::{PriorSource, SlowFastNet, SlowFastScorer, Variant};
use slowfast_data::parallel::{par_map, Job};
use slowfast_data::protocol::metrics::{pessimistic_rank, MeanStd, Metric, MetricSums, METRICS};
use slowfast_data::protocol::sampler::Case;
use slowfast_data::protocol::{query, Query, Scorer, View, BATCH_CASES};
use slowfast_data::split::Split;
use slowfast_data::{output, FileError};
use slowfast_data::{Dataset, EventKind};
use slowfast_feed::retrieval::{self, Retrieval};
use slowfast_feed::Items;

/// How the feed is made: the server's retrieval (pool and seen filter) and its size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeedConfig {
    pub retrieval: Retrieval,
    /// Items the server sends, which the device re-ranks.
    pub k: usize,
}

/// One user's feed at test time.
#[derive(Clone, Debug, PartialEq)]
pub struct Feed {
    /// Index into [`Split::timelines`].
    pub timeline: usize,
    /// The retrieval pool, before ranking.
    pub pool: Vec<u32>,
    /// The top `K` of the pool by the slow logit, in the feed's order.
    pub items: Vec<u32>,
}

/// What the cloud knows at a test click, for a model with `view`: the sampled protocol's
/// query, with every uploaded event as the click history ([`Query::uploaded`], see the
/// module documentation).
fn cloud_query<'a>(split: &'a Split, case: &'a Case, view: View) -> Query<'a> {
    let mut q = query(split, case, view);
    q.slow = q.uploaded;
    q
}

/// The item table the server retrieves with: the model's `e_i` and the training phases'
/// click counts, exactly as the bundle's `items.json`.
pub fn items(data: &Dataset, model: &SlowFastNet) -> Result<Items> {
    let vocabulary = Vocabulary::from_split(&data.log, &data.split)?;
    Ok(Items::new(
        item_table(model, &vocabulary)?,
        model.config.dim,
    )?)
}

/// Every user's feed: the retrieval pool over the cloud's history, ranked by `slow` (the slow
/// component, [`View::Slow`]), cut at `feed.k`. Users without a test click get none.
pub fn feeds(
    split: &Split,
    items: &Items,
    slow: &dyn Scorer<Error = TrainerError>,
    window: usize,
    feed: FeedConfig,
) -> Result<Vec<Feed>> {
    let popular = retrieval::by_popularity(items);
    // One case per user, at its first test click: the cloud's view is the same for all.
    let cases: Vec<Case> = (split.timelines.iter().enumerate())
        .filter_map(|(ti, t)| {
            let target = t.test_clicks().next()?;
            let probe = Case {
                timeline: ti,
                target,
                candidates: Vec::new(),
            };
            let q = cloud_query(split, &probe, View::Slow);
            let history = last_items(q.slow, EventKind::Click, window);
            let shown = last_items(q.slow, EventKind::Exposure, feed.retrieval.seen);
            Some(Case {
                candidates: retrieval::candidates(
                    items,
                    &popular,
                    &history,
                    &shown,
                    feed.retrieval.pool,
                ),
                ..probe
            })
        })
        .collect();
    let queries: Vec<Query<'_>> = cases
        .iter()
        .map(|c| cloud_query(split, c, View::Slow))
        .collect();
    let logits = score_all(slow, &queries)?;
    Ok(cases
        .into_iter()
        .zip(logits)
        .map(|(case, logits)| Feed {
            timeline: case.timeline,
            items: (retrieval::feed_order(&logits, |_| false, feed.k).into_iter())
                .map(|j| case.candidates[j])
                .collect(),
            pool: case.candidates,
        })
        .collect())
}

/// Scores `queries` with `model` in batches on the training threads: one score per
/// candidate, per query.
fn score_all(
    model: &dyn Scorer<Error = TrainerError>,
    queries: &[Query<'_>],
) -> Result<Vec<Vec<f32>>> {
    let batches: Vec<&[Query<'_>]> = queries.chunks(BATCH_CASES).collect();
    let scored = par_map(&batches, |batch| {
        let scores = model.score(batch)?;
        let expected: usize = batch.iter().map(|q| q.candidates.len()).sum();
        if scores.len() != expected {
            return Err(TrainerError::Unusable(format!(
                "model returned {} scores for {expected} candidates",
                scores.len()
            )));
        }
        let mut rest = scores.as_slice();
        Ok(batch
            .iter()
            .map(|q| {
                let (this, tail) = rest.split_at(q.candidates.len());
                rest = tail;
                this.to_vec()
            })
            .collect::<Vec<_>>())
    })?;
    Ok(scored.into_iter().flatten().collect())
}

/// The 0-based pessimistic rank of `positive` among `candidates` scored `scores`; `None`
/// when it is not a candidate (a miss).
pub fn rank_of(positive: u32, candidates: &[u32], scores: &[f32]) -> Option<usize> {
    let j = candidates.iter().position(|&c| c == positive)?;
    let mut ordered = Vec::with_capacity(scores.len());
    ordered.push(scores[j]);
    ordered.extend((scores.iter().enumerate()).filter_map(|(i, &s)| (i != j).then_some(s)));
    Some(pessimistic_rank(&ordered))
}

/// The cases of one seed: every test click with the user's feed as its candidates.
fn cases(split: &Split, feeds: &[Feed]) -> Vec<Case> {
    feeds
        .iter()
        .flat_map(|f| {
            (split.timelines[f.timeline].test_clicks()).map(|target| Case {
                timeline: f.timeline,
                target,
                candidates: f.items.clone(),
            })
        })
        .collect()
}

/// The four arms' scores for every case, from one MC²-SF model.
pub fn arm_scores(
    model: &std::sync::Arc<SlowFastNet>,
    split: &Split,
    cases: &[Case],
) -> Result<[(Arm, Vec<Vec<f32>>); 4]> {
    let scores = |view, priors| {
        let scorer = SlowFastScorer {
            model: model.clone(),
            view,
            priors,
        };
        row_scores(&scorer, split, cases)
    };
    let slow = scores(View::Slow, PriorSource::Slow)?;
    let fast = scores(View::RealTime, PriorSource::Zero)?;
    let vanilla = (slow.iter().zip(&fast))
        .map(|(s, f)| s.iter().zip(f).map(|(s, f)| s + f).collect())
        .collect();
    let mc2sf = scores(View::RealTime, PriorSource::Slow)?;
    Ok([
        (Arm::SlowOnly, slow),
        (Arm::FastOnly, fast),
        (Arm::Vanilla, vanilla),
        (Arm::Mc2sf, mc2sf),
    ])
}

/// `model`'s scores for every case, with the cloud's history and its own view.
fn row_scores(
    model: &dyn Scorer<Error = TrainerError>,
    split: &Split,
    cases: &[Case],
) -> Result<Vec<Vec<f32>>> {
    let queries: Vec<Query<'_>> = cases
        .iter()
        .map(|c| cloud_query(split, c, model.view()))
        .collect();
    score_all(model, &queries)
}

/// Every case's rank in every row of one seed (`None`: the clicked item was not in the feed).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeedRanks {
    pub seed: u64,
    /// The user (dense index) of each case.
    pub users: Vec<u32>,
    /// The target's index in the user's timeline, per case.
    pub targets: Vec<usize>,
    /// Per case: whether the clicked item was in the retrieval pool.
    pub in_pool: Vec<bool>,
    /// Row name → the 0-based rank of each case within the feed.
    pub ranks: IndexMap<String, Vec<Option<usize>>>,
}

impl SeedRanks {
    /// Each row's metric means over every case, a miss counting 0 everywhere.
    pub fn means(&self) -> IndexMap<String, [f64; METRICS.len()]> {
        (self.ranks.iter())
            .map(|(row, ranks)| {
                let mut sums = MetricSums::default();
                for rank in ranks {
                    match *rank {
                        Some(r) => sums.add_rank(r),
                        // A case with nothing added to any metric: all of them 0.
                        None => sums.cases += 1,
                    }
                }
                (row.clone(), sums.means())
            })
            .collect()
    }

    /// Shares of cases whose item is in the feed and in the pool.
    pub fn recall(&self) -> (f64, f64) {
        let n = self.targets.len().max(1) as f64;
        let in_feed =
            (self.ranks.values().next()).map_or(0, |r| r.iter().filter(|r| r.is_some()).count());
        let in_pool = self.in_pool.iter().filter(|&&p| p).count();
        (in_feed as f64 / n, in_pool as f64 / n)
    }
}

/// One seed: MC²-SF trained with the seed, the feeds, every row's ranks.
pub fn run_seed(
    data: &Dataset,
    models: &[String],
    seed: u64,
    config: ZooConfig,
    feed: FeedConfig,
) -> Result<SeedRanks> {
    let split = &data.split;
    let mut zoo = Zoo::new(split, seed, config);
    let model = zoo.slowfast(Variant::Mc2sf)?;
    let items = items(data, &model)?;
    let slow = SlowFastScorer {
        model: model.clone(),
        view: View::Slow,
        priors: PriorSource::Slow,
    };
    let window = model.config.windows.slow_history;
    let feeds = feeds(split, &items, &slow, window, feed)?;
    let cases = cases(split, &feeds);
    let pools: std::collections::HashMap<usize, &Feed> =
        feeds.iter().map(|f| (f.timeline, f)).collect();
    let positive = |c: &Case| split.timelines[c.timeline].events[c.target].item;
    let mut ranks = IndexMap::new();
    let mut add_row = |name: String, scores: Vec<Vec<f32>>| {
        let row = (cases.iter().zip(scores))
            .map(|(c, s)| rank_of(positive(c), &c.candidates, &s))
            .collect();
        ranks.insert(name, row);
    };
    for (arm, scores) in arm_scores(&model, split, &cases)? {
        add_row(arm.name().to_owned(), scores);
    }
    tracing::info!(seed, "re-ranked the four arms");
    for name in models {
        let scorer = zoo.scorer(name)?;
        add_row(name.clone(), row_scores(scorer.as_ref(), split, &cases)?);
        tracing::info!(row = name.as_str(), seed, "re-ranked");
    }
    Ok(SeedRanks {
        seed,
        users: cases
            .iter()
            .map(|c| split.timelines[c.timeline].user)
            .collect(),
        targets: cases.iter().map(|c| c.target).collect(),
        in_pool: (cases.iter())
            .map(|c| pools[&c.timeline].pool.contains(&positive(c)))
            .collect(),
        ranks,
    })
}

/// How the numbers were made, written into results.json.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RerankProtocol {
    pub split: String,
    pub pool: usize,
    /// The seen filter: the items of the user's latest this many exposures are left out.
    #[serde(default)]
    pub seen: usize,
    pub feed_k: usize,
    pub feed: String,
    pub cloud_view: String,
    pub device_view: String,
    pub rows: String,
    pub misses: String,
    pub ties: String,
    pub spread: String,
    pub users: usize,
    pub items: usize,
    pub cases_per_seed: usize,
}

/// The re-rank protocol's results.json.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RerankResults {
    pub dataset: String,
    pub protocol: RerankProtocol,
    pub seeds: Vec<u64>,
    /// Row → metric → mean ± std over seeds.
    pub models: IndexMap<String, ModelResult>,
    /// `feed` and `pool`: the share of test clicks whose item is in the feed (top `K`) and in
    /// the retrieval pool, mean ± std over seeds.
    pub recall: IndexMap<String, MeanStd>,
    /// Per metric name, the differences the report states (the best row against the
    /// runner-up, the MC²-SF arm against every other row), each with its paired-bootstrap
    /// interval over users, every seed's cases pooled.
    #[serde(default)]
    pub differences: IndexMap<String, Vec<Difference>>,
    /// The exact command that produced the file.
    #[serde(default)]
    pub command: String,
}

/// The differences [`RerankResults`] states, from every case's rank in `runs` (a miss counts
/// 0 on every metric).
fn differences(runs: &[SeedRanks]) -> Result<IndexMap<String, Vec<Difference>>> {
    let users: Vec<u32> = runs.iter().flat_map(|r| r.users.iter().copied()).collect();
    let rows: Vec<&str> = runs
        .first()
        .map(|r| r.ranks.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let mut out = IndexMap::new();
    if users.is_empty() || rows.len() < 2 {
        return Ok(out);
    }
    let boot = Paired::new(&users, bootstrap::RESAMPLES, bootstrap::SEED)?;
    for metric in METRICS {
        let values: Vec<Vec<f64>> = (rows.iter())
            .map(|row| {
                (runs.iter())
                    .flat_map(|r| r.ranks.get(*row).into_iter().flatten())
                    .map(|rank| rank.map_or(0.0, |k| metric.at_rank(k)))
                    .collect()
            })
            .collect();
        let means: Vec<(&str, f64)> = (rows.iter().zip(&values))
            .map(|(row, v)| (*row, v.iter().sum::<f64>() / v.len().max(1) as f64))
            .collect();
        let mut stated = Vec::new();
        let of =
            |name: &str| (rows.iter().zip(&values)).find_map(|(r, v)| (*r == name).then_some(v));
        for (a, b) in stated_pairs(&means) {
            if let (Some(va), Some(vb)) = (of(a), of(b)) {
                stated.push(Difference::new(a, b, boot.interval(va, vb)?));
            }
        }
        out.insert(metric.name(), stated);
    }
    Ok(out)
}

/// Runs the re-rank protocol for every seed (one at a time; each trains its own models).
/// `models` are the zoo's rows after the four arms.
pub fn run(
    data: &Dataset,
    models: &[String],
    seeds: &[u64],
    config: ZooConfig,
    feed: FeedConfig,
) -> Result<(RerankResults, Vec<SeedRanks>)> {
    if feed.k == 0 || feed.retrieval.pool < feed.k {
        return Err(TrainerError::InvalidArgument(format!(
            "the feed needs 1 <= K <= pool, got K = {} and pool = {}",
            feed.k, feed.retrieval.pool
        )));
    }
    if seeds.is_empty() {
        return Err(TrainerError::InvalidArgument("no seeds to evaluate".into()));
    }
    let runs = seeds
        .iter()
        .map(|&seed| {
            let _job = Job::start();
            run_seed(data, models, seed, config, feed)
        })
        .collect::<Result<Vec<_>>>()?;
    let mut per_row: IndexMap<String, Vec<[f64; METRICS.len()]>> = IndexMap::new();
    let (mut feed_recall, mut pool_recall) = (Vec::new(), Vec::new());
    for run in &runs {
        for (row, means) in run.means() {
            per_row.entry(row).or_default().push(means);
        }
        let (f, p) = run.recall();
        feed_recall.push(f);
        pool_recall.push(p);
    }
    let results = RerankResults {
        dataset: data.name.clone(),
        protocol: protocol(data, feed, runs[0].targets.len()),
        seeds: seeds.to_vec(),
        models: (per_row.into_iter())
            .map(|(row, means)| (row, Results::model_entry(&means)))
            .collect(),
        recall: IndexMap::from([
            ("feed".to_owned(), MeanStd::of(&feed_recall)),
            ("pool".to_owned(), MeanStd::of(&pool_recall)),
        ]),
        differences: differences(&runs)?,
        command: String::new(),
    };
    Ok((results, runs))
}

fn protocol(data: &Dataset, feed: FeedConfig, cases_per_seed: usize) -> RerankProtocol {
    RerankProtocol {
        split: "per user by time, as the sampled protocol: last 5 clicks = test, the 5 before \
                = fast training, the rest = slow training"
            .into(),
        pool: feed.retrieval.pool,
        seen: feed.retrieval.seen,
        feed_k: feed.k,
        feed: format!(
            "what GET /v1/feed sends: a pool of {} items (half by the dot product of e_i with \
             the mean embedding of the last W_s clicks, the rest by training-phase popularity, \
             clicked items and the items of the latest {} exposures left out), ranked by \
             MC2-SF's slow component (DIN w/ F2S, eq. 5-6), the top {} kept",
            feed.retrieval.pool, feed.retrieval.seen, feed.k
        ),
        cloud_view: "every event before the test phase (the device's last upload came at the \
                     end of the fast phase, clicks and exposures with r̂2): the click history \
                     of retrieval and of the slow component, and the exposures r̂2 is folded \
                     from"
            .into(),
        device_view: "every event before the target (real time)".into(),
        rows: "the online arms on MC2-SF: slow only (the feed's order), fast only (the fast \
               component with r_t = r_n = 0), vanilla slow+fast (slow logit + zero-prior fast \
               logit), MC²-SF (the fast component with the slow component's r_t, r_n); then \
               the zoo's models, each trained as in the sampled protocol"
            .into(),
        misses: "a test click whose item is not in the feed scores 0 on every metric".into(),
        ties: "pessimistic: feed items scoring >= the positive rank above it".into(),
        spread: "sample standard deviation (n-1) of per-seed means".into(),
        users: data.split.timelines.len(),
        items: data.split.num_items,
        cases_per_seed,
    }
}

impl RerankResults {
    /// Writes results.json and results.md into `dir`, and every case's ranks (`ranks`) into
    /// ranks.json.
    pub fn write(&self, ranks: &[SeedRanks], dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| FileError::new(dir, e))?;
        output::write_json(&dir.join("results.json"), "results", self)?;
        output::write_text(&dir.join("results.md"), &self.markdown())?;
        let ranks = serde_json::to_string(ranks).map_err(slowfast_data::JsonError::of("ranks"))?;
        Ok(output::write_text(&dir.join("ranks.json"), &ranks)?)
    }

    /// The Markdown report: one row per model, the feed's recall, the protocol.
    pub fn markdown(&self) -> String {
        let p = &self.protocol;
        let seeds: Vec<String> = self.seeds.iter().map(u64::to_string).collect();
        let mut md = format!("# Re-rank results: {}\n\n", self.dataset);
        let _ = writeln!(
            md,
            "Mean ± sample std over {} seed(s) ({}); {} users, {} items, {} test clicks per \
             seed; each test click ranked within the feed the sync server would send (the top \
             {} of a retrieval pool of {} by the slow model); a click outside the feed is a \
             miss.\n",
            self.seeds.len(),
            seeds.join(", "),
            p.users,
            p.items,
            p.cases_per_seed,
            p.feed_k,
            p.pool
        );
        if !self.command.is_empty() {
            let _ = writeln!(md, "Made by:\n\n```\n{}\n```\n", self.command);
        }
        let names: Vec<String> = METRICS.iter().map(|m| m.name()).collect();
        let _ = writeln!(
            md,
            "| Model | {} |\n|---|{}",
            names.join(" | "),
            "---|".repeat(names.len())
        );
        for (row, result) in &self.models {
            let cells: Vec<String> = (names.iter())
                .map(|m| {
                    result
                        .get(m)
                        .map_or("–".into(), |v| format!("{:.4} ± {:.4}", v.mean, v.std))
                })
                .collect();
            let _ = writeln!(md, "| {row} | {} |", cells.join(" | "));
        }
        md += "\nRecall (share of test clicks whose item is there):";
        for (what, v) in &self.recall {
            let _ = write!(md, " {what} {:.4} ± {:.4};", v.mean, v.std);
        }
        md.pop();
        md += ".\n";
        let rows: Vec<&str> = self.models.keys().map(String::as_str).collect();
        let names: Vec<String> = (METRICS.iter())
            .filter(|m| matches!(m, Metric::Hr(10) | Metric::Ndcg(10)))
            .map(|m| m.name())
            .collect();
        md += &differences_markdown(&rows, &self.differences, &names);
        md += "\n## Protocol\n\n";
        for (k, v) in [
            ("split", &p.split),
            ("feed", &p.feed),
            ("the cloud sees", &p.cloud_view),
            ("the device sees", &p.device_view),
            ("rows", &p.rows),
            ("misses", &p.misses),
            ("ties", &p.ties),
            ("spread", &p.spread),
        ] {
            let _ = writeln!(md, "- **{k}**: {v}");
        }
        md
    }
}

#[cfg(test)]
mod tests;
