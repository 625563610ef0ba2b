use super::units::cut_sequences;
use super::*;
use crate::models::features::Padded;
use crate::models::SequenceNet;

/// An event of user 0.
fn ev(item: u32, ts: i64, kind: EventKind) -> slowfast_data::Event {
    slowfast_data::Event {
        user: 0,
        item,
        ts,
        kind,
    }
}

/// A click's impression: the exposures of the latest impression strictly before it (other
/// clicks on the same feed skipped), never an earlier impression, the clicked item or a
/// repeat, at most `n`.
#[test]
fn the_impression_is_the_latest_feed_shown_before_the_click() {
    use EventKind::{Click, Exposure};
    let realtime = [
        ev(1, 10, Exposure), // an earlier feed
        ev(2, 10, Exposure),
        ev(3, 12, Click),
        ev(4, 20, Exposure), // the latest feed: 4, 5, 4 again, 9 (the clicked item)
        ev(5, 20, Exposure),
        ev(4, 20, Exposure),
        ev(9, 20, Exposure),
        ev(6, 23, Click), // another click on the same feed
    ];
    let impression_of = |realtime: &[slowfast_data::Event], item, n| {
        let moment = Moment {
            user: 0,
            slow: &[],
            realtime,
            uploaded: &[],
        };
        impression(&Positive { moment, item }, n)
    };
    assert_eq!(impression_of(&realtime, 9, 10), [4, 5]);
    assert_eq!(impression_of(&realtime, 9, 1), [4]);
    assert!(impression_of(&realtime, 9, 0).is_empty());
    assert!(impression_of(&[ev(1, 1, Click)], 2, 5).is_empty());
}

/// Validating on impressions ranks each held-out click first against the rest of its
/// impression and leaves out clicks without one; with none at all there is no such set.
#[test]
fn impression_validation_ranks_a_click_against_its_impression() {
    use EventKind::Exposure;
    let shown = [ev(4, 20, Exposure), ev(5, 20, Exposure)];
    let moment = |realtime| Moment {
        user: 0,
        slow: &[],
        realtime,
        uploaded: &[],
    };
    let held = [
        Positive {
            moment: moment(&shown),
            item: 9,
        },
        Positive {
            moment: moment(&[]),
            item: 3,
        },
    ];
    let valid = ValidSet::impressions(&held).unwrap();
    assert_eq!(valid.kind, Validation::Impressions);
    assert_eq!(valid.cases.len(), 1);
    assert_eq!(valid.cases[0].1, [9, 5, 4]);
    assert!(ValidSet::impressions(&held[1..]).is_none());
    let sampled = ValidSet::new(&held, 1000, 1, NegativePool::NotClicked);
    assert!(sampled.cases.iter().all(|(_, c)| c.len() == 100));
}

#[test]
fn every_click_but_the_first_is_the_target_of_exactly_one_sequence() {
    for n in [1, 3, 50] {
        for len in 0..120u32 {
            let items: Vec<u32> = (0..len).collect();
            let cut = cut_sequences(&items, n);
            let targets: Vec<u32> = cut.iter().flat_map(|s| s[1..].to_vec()).collect();
            assert_eq!(targets, items.get(1..).unwrap_or(&[]), "n {n}, len {len}");
            assert!(cut.iter().all(|s| s.len() >= 2 && s.len() <= n + 1));
            if let Some(last) = cut.last() {
                assert_eq!(last.len(), (len as usize).min(n + 1), "the latest is full");
                assert_eq!(last.last(), items.last());
            }
        }
    }
}

/// The fast-side baselines' positives list each user's slow-phase clicks, then the slow
/// phase's held-out click, then the fast phase's: sequences still follow every user's
/// clicks in time order, each click (but the first) the target of one.
#[test]
fn sequences_follow_each_users_clicks_in_time_order_across_phases() -> Result<()> {
    use crate::models::features::{realtime_positives, Needs};
    use slowfast_data::split::Split;
    use slowfast_data::{EventKind, EventLog};

    /// A sequence model with GRU4Rec's session window: [`Units`] reads only its window.
    struct Window(usize);
    impl Net for Window {
        fn needs(&self) -> Needs {
            Needs::default()
        }
        fn logits(&self, _: &Batch) -> Result<Tensor> {
            unreachable!("cutting sequences scores nothing")
        }
        fn sequence(&self) -> Option<&dyn SequenceNet> {
            Some(self)
        }
    }
    impl SequenceNet for Window {
        fn window(&self) -> usize {
            self.0
        }
        fn states(&self, _: &Padded) -> Result<Tensor> {
            unreachable!("cutting sequences runs nothing")
        }
        fn score(&self, _: &Tensor, _: &Tensor) -> Result<Tensor> {
            unreachable!("cutting sequences scores nothing")
        }
    }

    let mut log = EventLog::default();
    for user in ["a", "b"] {
        for k in 0..30 {
            log.push_raw(user, &format!("c{user}{k}"), k, EventKind::Click);
        }
    }
    let split = Split::new(&log);
    let data = realtime_positives(&split);
    let net = Window(crate::models::ModelConfig::default().windows.clicks.max(1));
    let net: &dyn Net = &net;
    let Units::Sequences { clicks, .. } = Units::new(net, &data.train) else {
        panic!("GRU4Rec trains on sequences");
    };
    let targets: Vec<u32> = clicks.iter().flat_map(|s| s[1..].to_vec()).collect();
    // Per user: 20 slow-phase clicks and 4 fast-phase ones train (the fifth validates).
    let want: Vec<u32> = (split.timelines.iter())
        .flat_map(|t| t.events[1..24].iter().map(|e| e.item))
        .collect();
    assert_eq!(targets, want);
    Ok(())
}

#[test]
fn learning_rates_are_checked_and_round_trip_through_json() -> Result<()> {
    let d = TrainConfig::default();
    let cfg = d.with_rates(&[2e-3, 1e-2])?;
    assert_eq!((cfg.lr, cfg.rates()), (2e-3, vec![2e-3, 1e-2]));
    let json = serde_json::to_string(&cfg).map_err(|e| TrainerError::Unusable(e.to_string()))?;
    assert!(json.contains("\"more_lrs\":[0.01]"), "{json}");
    let back: TrainConfig =
        serde_json::from_str(&json).map_err(|e| TrainerError::Unusable(e.to_string()))?;
    assert_eq!(back, cfg);
    // One rate writes the configuration as before the list existed, and reads it back.
    let one = serde_json::to_string(&d).map_err(|e| TrainerError::Unusable(e.to_string()))?;
    assert!(!one.contains("more_lrs"), "{one}");
    assert_eq!(serde_json::from_str::<TrainConfig>(&one).ok(), Some(d));
    for bad in [
        &[][..],
        &[1e-3, 1e-3],
        &[f64::NAN],
        &[1e-3, -1.0],
        &[1e-3, f64::INFINITY],
        &[1e-4, 1e-3, 1e-2, 1e-1, 1.0],
    ] {
        assert!(
            matches!(d.with_rates(bad), Err(TrainerError::InvalidArgument(_))),
            "{bad:?}"
        );
    }
    let too_many = json.replace("[0.01]", "[0.01,0.02,0.03,0.04]");
    assert!(serde_json::from_str::<TrainConfig>(&too_many).is_err());
    Ok(())
}

#[test]
fn a_batch_of_moments_holds_exactly_per_batch_positives() {
    let order: Vec<usize> = (0..10).collect();
    let sizes: Vec<usize> = (Units::Moments(&[]).batches(&order, 3).iter())
        .map(|b| b.len())
        .collect();
    assert_eq!(sizes, [3, 3, 3, 1]);
}
