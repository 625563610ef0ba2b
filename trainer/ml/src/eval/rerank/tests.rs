use super::*;
use crate::models::train::TrainConfig;
use crate::models::ModelConfig;
use crate::testing::{slow, tiny, untrained};
use slowfast_core::manifest::ItemTable;
use slowfast_data::EventLog;

/// A small feed: a pool of 30 with the seen filter over 5 exposures, 10 items sent.
const FEED: FeedConfig = FeedConfig {
    retrieval: Retrieval { pool: 30, seen: 5 },
    k: 10,
};

/// A slow model that ranks items by index, lowest first.
struct LowestFirst;

impl Scorer for LowestFirst {
    type Error = TrainerError;

    fn view(&self) -> View {
        View::Slow
    }
    fn score(&self, queries: &[Query<'_>]) -> Result<Vec<f32>> {
        Ok((queries.iter())
            .flat_map(|q| q.candidates.iter().map(|&c| -(c as f32)))
            .collect())
    }
}

/// A user whose test clicks are all item 299, which every feed ranks last: each test
/// click is outside the top K, a miss that scores 0 everywhere, though it is in the pool.
#[test]
fn a_click_outside_the_feed_is_a_miss() {
    let mut log = EventLog::default();
    // Item `i<n>` gets index n; the user without clicks is left out of the split.
    for i in 0..300 {
        log.push_raw("other", &format!("i{i}"), 100, EventKind::Exposure);
    }
    for t in 0..20 {
        let item = if t < 15 {
            format!("i{t}")
        } else {
            "i299".into()
        };
        log.push_raw("u", &item, t, EventKind::Click);
    }
    let split = Split::new(&log);
    let table = ItemTable {
        ids: (0..split.num_items).map(|i| format!("{i}")).collect(),
        popularity: vec![1; split.num_items],
        embeddings: vec![1.0; split.num_items * 2],
        added: 0,
    };
    let items = Items::new(table, 2).unwrap();
    let feeds = feeds(
        &split,
        &items,
        &LowestFirst,
        50,
        FeedConfig {
            retrieval: Retrieval { pool: 300, seen: 0 },
            k: 10,
        },
    )
    .unwrap();
    let [feed] = feeds.as_slice() else {
        panic!("one user with test clicks: {feeds:?}")
    };
    let target = split.timelines[0].events[split.timelines[0].test_start].item;
    assert!(feed.pool.contains(&target));
    assert!(!feed.items.contains(&target), "{feed:?}");
    // The feed is the K lowest indices of the pool, lowest first.
    let mut lowest = feed.pool.clone();
    lowest.sort_unstable();
    assert_eq!(feed.items, lowest[..10]);
    let cases = cases(&split, &feeds);
    assert_eq!(cases.len(), 5);
    let scores = vec![1.0; 10];
    for c in &cases {
        assert_eq!(rank_of(target, &c.candidates, &scores), None);
    }
    // With one hit at the top beside four misses, every metric is 1/5.
    let ranks = SeedRanks {
        seed: 1,
        users: vec![0; 5],
        targets: cases.iter().map(|c| c.target).collect(),
        in_pool: vec![true; 5],
        ranks: IndexMap::from([("planted".to_owned(), vec![Some(0), None, None, None, None])]),
    };
    for m in ranks.means()["planted"] {
        assert!((m - 0.2).abs() < 1e-12, "{m}");
    }
    assert_eq!(ranks.recall(), (0.2, 1.0));
}

#[test]
fn rank_within_the_feed_is_pessimistic() {
    let feed = [7, 3, 9, 4];
    assert_eq!(rank_of(9, &feed, &[0.1, 0.5, 0.5, 0.9]), Some(2));
    assert_eq!(rank_of(7, &feed, &[2.0, 0.5, 0.5, 0.9]), Some(0));
    assert_eq!(rank_of(5, &feed, &[2.0, 0.5, 0.5, 0.9]), None);
}

/// Every arm ranks the same K candidates of each case; vanilla adds the two logits, and
/// the priors change the fast component's scores.
#[test]
fn the_four_arms_score_the_same_candidates() {
    let data = tiny();
    let split = &data.split;
    let model = untrained(&data);
    let window = model.config.windows.slow_history;
    let items = items(&data, &model).unwrap();
    let feeds = feeds(split, &items, &slow(&model), window, FEED).unwrap();
    let cases = cases(split, &feeds);
    assert_eq!(cases.len(), 5 * split.timelines.len());
    let [(a0, slow), (a1, fast), (a2, vanilla), (a3, mc2sf)] =
        arm_scores(&model, split, &cases).unwrap();
    assert_eq!([a0, a1, a2, a3], Arm::ALL);
    for (k, case) in cases.iter().enumerate() {
        for row in [&slow, &fast, &vanilla, &mc2sf] {
            assert_eq!(row[k].len(), case.candidates.len());
        }
        for j in 0..FEED.k {
            assert!((vanilla[k][j] - (slow[k][j] + fast[k][j])).abs() < 1e-6);
        }
        // Slow only keeps the feed's order (up to the batch's float rounding).
        let ordered = slow[k].windows(2).all(|w| w[0] >= w[1] - 1e-5);
        assert!(ordered, "{:?}", slow[k]);
    }
    assert_ne!(fast, mc2sf, "zero priors must change the fast scores");
}

/// Two runs with the same seed give the same feeds and ranks.
#[test]
fn runs_are_deterministic() {
    let data = tiny();
    let config = ZooConfig {
        model: ModelConfig::default(),
        train: TrainConfig {
            max_epochs: 1,
            max_valid: 5,
            ..TrainConfig::default()
        },
        rounds: 1,
    };
    let models = ["Pop".to_owned()];
    let (results, ranks) = run(&data, &models, &[2], config, FEED).unwrap();
    let (again, ranks_again) = run(&data, &models, &[2], config, FEED).unwrap();
    assert_eq!(ranks, ranks_again);
    assert_eq!(results, again);
    let rows: Vec<&str> = results.models.keys().map(String::as_str).collect();
    assert_eq!(
        rows,
        [
            "slow only",
            "fast only",
            "vanilla slow+fast",
            "MC²-SF",
            "Pop"
        ]
    );
    assert_eq!(ranks[0].targets.len(), 5 * data.split.timelines.len());
    let md = results.markdown();
    assert!(md.contains("| MC²-SF | "), "{md}");
    assert!(md.contains("Recall"), "{md}");
    let bad = FeedConfig {
        retrieval: Retrieval { pool: 5, seen: 0 },
        k: 10,
    };
    assert!(run(&data, &models, &[2], config, bad).is_err());
}
