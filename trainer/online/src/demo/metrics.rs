//! The online metrics of the demo, per shown feed, under the planted world (`synth::World`).

use slowfast_data::synth::{UserState, World};

/// Items a feed shows; the metrics are at this cut-off.
pub const SHOWN: usize = 10;

/// CTR@10: clicks over items shown (0 when nothing was shown).
pub fn ctr(clicks: usize, shown: usize) -> f64 {
    if shown == 0 {
        0.0
    } else {
        clicks as f64 / shown as f64
    }
}

/// NDCG@k of a shown order with gains `shown` (in display order) against the best `k` gains of
/// `pool`, which must contain the shown items' gains: `Σ g_j / log2(j + 2)` over the ideal.
/// 0 when the pool has no positive gain.
pub fn ndcg_at(k: usize, shown: &[f64], pool: &[f64]) -> f64 {
    let dcg = |gains: &mut dyn Iterator<Item = f64>| -> f64 {
        gains
            .take(k)
            .enumerate()
            .map(|(j, g)| g / (j as f64 + 2.0).log2())
            .sum()
    };
    let mut ideal: Vec<f64> = pool.to_vec();
    ideal.sort_by(|a, b| b.total_cmp(a));
    let best = dcg(&mut ideal.into_iter());
    if best <= 0.0 {
        return 0.0;
    }
    dcg(&mut shown.iter().copied()) / best
}

/// The gain of `item` for `user`: the planted long-term preference (`World::preference`:
/// taste, popularity, dislike), floored at 0 so that disliked items gain nothing.
pub fn gain(world: &World, user: u32, item: u32) -> f64 {
    f64::from(world.preference(user, item)).max(0.0)
}

/// NDCG@10 of the shown items against the planted preferences, the ideal being the best ten
/// items of the servable catalogue (items `0..catalogue`) the user can click now
/// (`World::can_click`): what any arm could have shown.
pub fn planted_ndcg10(
    world: &World,
    state: &UserState,
    user: u32,
    shown: &[u32],
    catalogue: usize,
) -> f64 {
    let shown: Vec<f64> = shown.iter().map(|&i| gain(world, user, i)).collect();
    let pool: Vec<f64> = (0..catalogue as u32)
        .filter(|&i| world.can_click(state, i))
        .map(|i| gain(world, user, i))
        .collect();
    ndcg_at(SHOWN, &shown, &pool)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use slowfast_data::synth::SynthConfig;

    #[test]
    fn ctr_is_clicks_per_item_shown() {
        assert_eq!(ctr(3, 10), 0.3);
        assert_eq!(ctr(0, 0), 0.0);
    }

    #[test]
    fn ndcg_by_hand() {
        // Ideal [3, 2, 1]: 3 + 2/log2 3 + 1/2 = 4.76186; shown [1, 3]: 1 + 3/log2 3 = 2.89279.
        let v = ndcg_at(10, &[1.0, 3.0], &[2.0, 1.0, 3.0, 0.0]);
        assert!((v - 2.892_789 / 4.761_859).abs() < 1e-5, "{v}");
        assert_eq!(ndcg_at(2, &[3.0, 2.0], &[1.0, 2.0, 3.0]), 1.0);
        assert_eq!(ndcg_at(10, &[], &[1.0]), 0.0);
        assert_eq!(ndcg_at(10, &[0.0], &[0.0, 0.0]), 0.0);
    }

    #[test]
    fn planted_ndcg_is_one_for_the_planted_top_ten_and_lower_for_disliked_items() {
        let world = World::new(&SynthConfig {
            users: 5,
            items: 200,
            ..SynthConfig::default()
        })
        .unwrap();
        let user = 2;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let state = world.new_user_state(user, &mut rng);
        let mut by_pref: Vec<u32> = (0..200).collect();
        by_pref.sort_by(|&a, &b| {
            world
                .preference(user, b)
                .total_cmp(&world.preference(user, a))
        });
        let best = planted_ndcg10(&world, &state, user, &by_pref[..SHOWN], 200);
        assert!((best - 1.0).abs() < 1e-12, "{best}");
        let bad = world.disliked_topics(user)[0];
        let disliked = &world.topic_items(bad)[..SHOWN];
        assert_eq!(planted_ndcg10(&world, &state, user, disliked, 200), 0.0);
        let reversed: Vec<u32> = by_pref[..SHOWN].iter().rev().copied().collect();
        let r = planted_ndcg10(&world, &state, user, &reversed, 200);
        assert!(r < 1.0 && r > 0.5, "{r}");
    }
}
