//! The logged history: what the generator writes, its planted structure visible in the clicks.

use super::*;

#[test]
fn same_seed_gives_identical_log() {
    let dump = |log: &EventLog| -> String {
        log.events
            .iter()
            .map(|e| {
                let (u, i) = (
                    log.users.raw(e.user).unwrap_or("?"),
                    log.items.raw(e.item).unwrap_or("?"),
                );
                format!("{u},{i},{},{:?}\n", e.ts, e.kind)
            })
            .collect()
    };
    let a = generate(&small(7)).unwrap();
    let b = generate(&small(7)).unwrap();
    assert!(!a.events.is_empty());
    assert_eq!(dump(&a), dump(&b));
    let c = generate(&small(8)).unwrap();
    assert_ne!(dump(&a), dump(&c));
}

#[test]
fn default_config_meets_the_pipeline_needs() {
    let (world, log) = default_log();
    assert_eq!((world.num_users(), world.num_items()), (1000, 1000));
    let (n_clicks, n_exposures) = log.counts();
    let users = per_user(log);
    let per_user_clicks: Vec<usize> = users.iter().map(|ev| clicks(ev).len()).collect();
    assert!(
        per_user_clicks.iter().all(|&c| c >= 25),
        "min {:?}",
        per_user_clicks.iter().min()
    );
    let mean = n_clicks as f64 / users.len() as f64;
    assert!(
        (60.0..=120.0).contains(&mean),
        "mean clicks per user {mean}"
    );
    let ratio = n_exposures as f64 / n_clicks as f64;
    let slate = SynthConfig::default().slate_size as f64;
    assert!(
        (1.0..=slate).contains(&ratio),
        "exposures per click {ratio} (slates of {slate})"
    );

    let mut per_item = vec![0usize; world.num_items()];
    for e in &log.events {
        per_item[e.item as usize] += 1;
    }
    let dense = per_item.iter().filter(|&&n| n >= 20).count();
    assert!(
        dense as f64 >= 0.99 * per_item.len() as f64,
        "{dense} items with >= 20 interactions"
    );

    assert!(
        log.events.windows(2).all(|w| w[0].ts <= w[1].ts),
        "log sorted by time"
    );
    for ev in &users {
        assert!(ev.windows(2).all(|w| w[0].ts <= w[1].ts));
        let c = clicks(ev);
        let mut distinct = c.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(
            distinct.len(),
            c.len(),
            "an item is clicked at most once per user"
        );
    }
    assert_eq!(log.users.raw(17), Some("u17"));
    assert_eq!(log.items.get("i999"), Some(999));
    assert_eq!(log.skipped, 0);
}

#[test]
fn clicks_concentrate_on_long_term_taste() {
    let (world, log) = default_log();
    let top = 2;
    let base = top as f64 / world.num_topics() as f64;
    let mut share = 0.0;
    for (user, ev) in per_user(log).iter().enumerate() {
        let taste = world.taste(user as u32);
        let mut topics: Vec<usize> = (0..taste.len()).collect();
        topics.sort_by(|&a, &b| taste[b].total_cmp(&taste[a]));
        let c = clicks(ev);
        let hits = c
            .iter()
            .filter(|&&i| topics[..top].contains(&(world.item_topic(i) as usize)))
            .count();
        share += hits as f64 / c.len() as f64;
    }
    share /= world.num_users() as f64;
    assert!(
        share > 3.0 * base,
        "top-{top} taste topics get {share:.3} of clicks, base rate {base:.3}"
    );
}

#[test]
fn consecutive_clicks_share_a_topic_more_than_distant_ones() {
    let (world, log) = default_log();
    let same_topic_rate = |lag: usize| {
        let (mut same, mut pairs) = (0u64, 0u64);
        for ev in per_user(log) {
            let c = clicks(&ev);
            for w in c.windows(lag + 1) {
                pairs += 1;
                same += u64::from(world.item_topic(w[0]) == world.item_topic(w[lag]));
            }
        }
        rate((same, pairs))
    };
    let (near, far) = (same_topic_rate(1), same_topic_rate(40));
    assert!(
        near > 1.5 * far,
        "lag-1 same-topic rate {near:.3} vs lag-40 {far:.3}"
    );
}

#[test]
fn disliked_topics_are_shown_but_rarely_clicked() {
    let (world, log) = default_log();
    let disliked = ctr_where(log, |u, i, _| world.dislikes(u, world.item_topic(i)));
    let other = ctr_where(log, |u, i, _| !world.dislikes(u, world.item_topic(i)));
    let min_shows = (0.03 * (disliked.1 + other.1) as f64) as u64;
    assert_shown_but_ignored("disliked topics", disliked, other, min_shows, 0.1);
}

/// Asserts that `ignored` (clicks, shows) has more than `min_shows` shows and a CTR under
/// `ratio` × `other`'s.
fn assert_shown_but_ignored(
    what: &str,
    ignored: (u64, u64),
    other: (u64, u64),
    min_shows: u64,
    ratio: f64,
) {
    assert!(ignored.1 > min_shows, "{what} are shown: {ignored:?}");
    assert!(
        rate(ignored) < ratio * rate(other),
        "{what}: CTR {:.4} vs {:.4}",
        rate(ignored),
        rate(other)
    );
}

#[test]
fn a_fading_topic_is_clicked_before_its_onset_and_shown_but_ignored_after() {
    let (world, log) = fading_log();
    let (mut before, mut after) = ((0u64, 0u64), (0u64, 0u64));
    let mut shown_after = 0u64;
    for (u, events) in per_user(log).iter().enumerate() {
        let u = u as u32;
        let lead = world.fade_lead(u);
        assert!((15..=30).contains(&lead), "lead {lead}");
        let onset = clicks(events).len() - lead;
        let fading: Vec<u32> = (0..world.num_topics() as u32)
            .filter(|&t| world.fades(u, t))
            .collect();
        assert_eq!(fading.len(), 1, "user {u}: one fading topic");
        assert_eq!(
            world.taste(u)[fading[0] as usize],
            1.0,
            "it is the top taste topic"
        );
        assert!(
            !world.dislikes(u, fading[0]),
            "fading is not a hidden dislike"
        );
        let mut made = 0;
        for e in events {
            let hit = world.fades(u, world.item_topic(e.item));
            match e.kind {
                EventKind::Click => {
                    let side = if made < onset {
                        &mut before
                    } else {
                        &mut after
                    };
                    side.0 += u64::from(hit);
                    side.1 += 1;
                    made += 1;
                }
                EventKind::Exposure => shown_after += u64::from(hit && made >= onset),
            }
        }
    }
    let (before, after) = (rate(before), rate(after));
    assert!(
        before > 0.25,
        "share of clicks on the fading topic before the onset {before:.3}"
    );
    assert!(after < 0.02, "share after the onset {after:.4}");
    assert!(
        shown_after > 5_000,
        "the policy keeps showing it: {shown_after} exposures after the onset"
    );
    // The default world is the same with the option at 0: nothing fades.
    let (default, _) = default_log();
    assert!((0..default.num_users() as u32)
        .all(|u| (0..default.num_topics() as u32).all(|t| !default.fades(u, t))));
}

/// Temporary aversions ([`SynthConfig::aversion_rate`]), followed step by step: while one is
/// on, its topic (one of the user's top three) is shown by the policy but almost never
/// clicked, though the same topic is clicked often outside aversions; they end and recur.
#[test]
fn an_averted_topic_is_shown_but_ignored_until_the_aversion_ends() {
    let run = |aversion_rate: f64| {
        let cfg = SynthConfig {
            users: 200,
            aversion_rate,
            ..SynthConfig::default()
        };
        let world = World::new(&cfg).unwrap();
        let policy = LoggingPolicy::new(&world).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        // (clicks, shows) of the topic averted now, and of the same topics when not averted.
        let (mut averted, mut same_topic) = ((0u64, 0u64), (0u64, 0u64));
        let (mut steps_averted, mut steps, mut starts) = (0u64, 0u64, 0u64);
        for user in 0..cfg.users as u32 {
            let mut state = world.new_user_state(user, &mut rng);
            let mut history = Vec::new();
            let top: Vec<usize> = {
                let taste = world.taste(user);
                let mut t: Vec<usize> = (0..taste.len()).collect();
                t.sort_by(|&a, &b| taste[b].total_cmp(&taste[a]).then(a.cmp(&b)));
                t.truncate(3);
                t
            };
            let mut ever: Vec<u32> = Vec::new();
            let mut last = None;
            for _ in 0..300 {
                let now = state.averted();
                if now.is_some() && now != last {
                    starts += 1;
                }
                last = now;
                if let Some(t) = now {
                    assert!(
                        top.contains(&(t as usize)),
                        "user {user}: {t} is a top topic"
                    );
                    steps_averted += 1;
                    ever.push(t);
                }
                steps += 1;
                let slate = policy.slate(&state, &history, &mut rng);
                let r = world.step(&mut state, user, &slate, &mut rng);
                for (j, &item) in slate.iter().enumerate() {
                    let topic = world.item_topic(item);
                    let side = if now == Some(topic) {
                        &mut averted
                    } else if ever.contains(&topic) {
                        &mut same_topic
                    } else {
                        continue;
                    };
                    side.0 += u64::from(r.clicked == Some(j));
                    side.1 += 1;
                }
                history.extend(r.clicked.map(|j| slate[j]));
            }
        }
        (averted, same_topic, rate((steps_averted, steps)), starts)
    };
    let (averted, same_topic, share, starts) = run(0.5);
    // The policy keeps showing the averted topic; outside aversions the same topics are clicked.
    assert_shown_but_ignored("averted topics", averted, same_topic, 2_000, 0.15);
    assert!(
        (0.2..0.8).contains(&share),
        "share of steps averted {share:.3}"
    );
    assert!(starts > 400, "aversions recur: {starts} over 200 users");
    let (off, _, share_off, starts_off) = run(0.0);
    assert_eq!((off.1, share_off, starts_off), (0, 0.0, 0), "rate 0: none");
}

#[test]
fn fatigue_lowers_the_ctr_of_items_shown_without_a_click() {
    let fatigue_ratio = |cfg: &SynthConfig| {
        let log = generate(cfg).unwrap();
        let fresh = ctr_where(&log, |_, _, seen| seen == 0);
        let tired = ctr_where(&log, |_, _, seen| seen >= 3);
        rate(tired) / rate(fresh)
    };
    let cfg = SynthConfig {
        users: 300,
        ..SynthConfig::default()
    };
    let with = fatigue_ratio(&cfg);
    let mut off = cfg.clone();
    off.click.fatigue = 0.0;
    let without = fatigue_ratio(&off);
    assert!(
        with < 0.5,
        "items shown >= 3 times unclicked keep {with:.3} of the fresh CTR"
    );
    assert!(
        with < 0.7 * without,
        "fatigue {with:.3} vs selection alone {without:.3}"
    );
}

/// HR@10 of the last click of every user against 99 items the user never interacted with,
/// scored by `score(user, item)`.
fn hit_rate_at_10(log: &EventLog, n_items: usize, score: impl Fn(u32, u32) -> f64) -> f64 {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut hits = 0usize;
    let users = per_user(log);
    for (user, ev) in users.iter().enumerate() {
        let user = user as u32;
        let Some(&target) = clicks(ev).last() else {
            continue;
        };
        let mut seen = vec![false; n_items];
        ev.iter().for_each(|e| seen[e.item as usize] = true);
        let unseen: Vec<u32> = (0..n_items as u32).filter(|&i| !seen[i as usize]).collect();
        let s = score(user, target);
        let above = index::sample(&mut rng, unseen.len(), 99)
            .iter()
            .filter(|&k| score(user, unseen[k]) >= s)
            .count();
        hits += usize::from(above < 10);
    }
    hits as f64 / users.len() as f64
}

#[test]
fn popularity_and_planted_preference_beat_random() {
    let (world, log) = default_log();
    let mut train_clicks = vec![0u64; world.num_items()];
    for ev in per_user(log) {
        let c = clicks(&ev);
        for &i in &c[..c.len().saturating_sub(5)] {
            train_clicks[i as usize] += 1;
        }
    }
    let popular = hit_rate_at_10(log, world.num_items(), |_, i| {
        train_clicks[i as usize] as f64
    });
    let planted = hit_rate_at_10(log, world.num_items(), |u, i| {
        f64::from(world.preference(u, i))
    });
    assert!(
        popular > 0.2,
        "popularity HR@10 {popular:.3}, random is 0.10"
    );
    assert!(
        planted > popular + 0.1,
        "planted preference HR@10 {planted:.3} vs popularity {popular:.3}"
    );
}
