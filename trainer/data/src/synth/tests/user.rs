//! One user step by step: responses, browsing, fatigue and the state after the history.

use super::*;

#[test]
fn respond_never_reclicks_and_counts_fatigue() {
    let world = World::new(&small(3)).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let user = 5;
    let mut state = world.new_user_state(user, &mut rng);
    let slate = [0u32, 1, 2];
    let mut clicked = Vec::new();
    let mut clock = state.clock();
    for _ in 0..50 {
        let before: Vec<f64> = slate.iter().map(|&i| state.fatigue(i)).collect();
        let response = world.step(&mut state, user, &slate, &mut rng);
        assert_eq!(response.shown_at, clock);
        assert!(state.clock() > clock, "the clock moves on");
        clock = state.clock();
        if let Some(j) = response.clicked {
            assert!(
                !clicked.contains(&slate[j]),
                "item {} clicked twice",
                slate[j]
            );
            clicked.push(slate[j]);
            assert!(response
                .clicked_at
                .is_some_and(|t| t > response.shown_at && t < clock));
            assert!(world.utility(&state, user, slate[j]).is_none());
        } else {
            assert_eq!(response.clicked_at, None);
        }
        for (j, &item) in slate.iter().enumerate() {
            let expected = before[j] + f64::from(u8::from(response.clicked != Some(j)));
            assert_eq!(state.fatigue(item), expected);
        }
        assert!(state.session_steps_left() >= 1);
    }
    assert_eq!(state.clicks(), clicked.len());
    assert_eq!(
        world.respond(&mut state, user, &[], &mut rng),
        None,
        "an empty slate gets no click"
    );
}

#[test]
fn browse_clicks_each_item_on_its_own_and_tires_the_rest() {
    let world = World::new(&small(3)).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let user = 7;
    let mut state = world.new_user_state(user, &mut rng);
    let feed: Vec<u32> = (0..10).collect();
    let mut clicks_per_feed = Vec::new();
    for _ in 0..30 {
        let before: Vec<f64> = feed.iter().map(|&i| state.fatigue(i)).collect();
        let was_clicked: Vec<bool> = feed.iter().map(|&i| state.has_clicked(i)).collect();
        let clock = state.clock();
        let b = world.browse(&mut state, user, &feed, &mut rng);
        assert_eq!(b.shown_at, clock);
        assert_eq!(b.clicked.len(), b.clicked_at.len());
        assert!(b.clicked_at.windows(2).all(|w| w[0] < w[1]));
        assert!(b.clicked_at.iter().all(|&t| t > clock && t < state.clock()));
        for (j, &item) in feed.iter().enumerate() {
            if b.clicked.contains(&j) {
                assert!(!was_clicked[j], "item {item} clicked twice");
                assert!(state.has_clicked(item));
            } else {
                assert_eq!(state.fatigue(item), before[j] + 1.0);
            }
        }
        clicks_per_feed.push(b.clicked.len());
    }
    assert!(
        clicks_per_feed.iter().any(|&n| n > 1),
        "several clicks per feed happen: {clicks_per_feed:?}"
    );
    assert_eq!(state.clicks(), clicks_per_feed.iter().sum::<usize>());
}

#[test]
fn state_after_history_continues_where_the_log_ends() {
    let cfg = small(5);
    let (world, log) = generate_with_world(&cfg).unwrap();
    let users = per_user(&log);
    for user in [0u32, 13, 39] {
        let state = state_after_history(&world, user).unwrap();
        let events = &users[user as usize];
        let history = clicks(events);
        assert_eq!(state.clicks(), history.len());
        assert!(history.iter().all(|&i| state.has_clicked(i)));
        let last = events.iter().map(|e| e.ts).max().unwrap();
        assert!(state.clock() > last, "the next slate comes after the log");
    }
    assert!(state_after_history(&world, 40).is_err());
}

#[test]
fn disliked_items_lose_against_no_click() {
    let world = World::new(&SynthConfig::default()).unwrap();
    let user = 0;
    let bad = world.disliked_topics(user);
    assert_eq!(bad.len(), 2);
    let slate: Vec<u32> = bad
        .iter()
        .flat_map(|&t| world.topic_items(t)[..2].to_vec())
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let mut state = world.new_user_state(user, &mut rng);
    let hits = (0..500)
        .filter(|_| world.respond(&mut state, user, &slate, &mut rng).is_some())
        .count();
    assert!(hits < 10, "{hits} clicks in 500 slates of disliked items");
    for &i in &slate {
        assert!(world.preference(user, i) < 0.0);
    }
}

#[test]
fn world_is_planted_as_documented() {
    let world = World::new(&SynthConfig::default()).unwrap();
    for t in 0..world.num_topics() as u32 {
        let n = world.topic_items(t).len();
        assert!((62..=63).contains(&n), "topic {t} has {n} items");
    }
    for user in 0..world.num_users() as u32 {
        let taste = world.taste(user);
        assert_eq!(taste.iter().copied().fold(0.0, f32::max), 1.0);
        let mut order: Vec<usize> = (0..taste.len()).collect();
        order.sort_by(|&a, &b| taste[b].total_cmp(&taste[a]));
        for &t in world.disliked_topics(user).iter() {
            assert_eq!(taste[t as usize], 0.0);
            assert!(
                !order[..3].contains(&(t as usize)),
                "a top-3 topic is disliked"
            );
        }
    }
    let head = (0..1000).max_by(|&a, &b| world.popularity(a).total_cmp(&world.popularity(b)));
    assert_eq!(head.map(|i| world.popularity(i)), Some(1.0));
}
