//! The built-in logging policy: the recommender whose slates the synthetic log records.

use rand::distr::weighted::WeightedIndex;
use rand::distr::Distribution;
use rand::Rng;

use super::world::{UserState, World};
use crate::error::{DataError, Result};

/// Draws per slot before falling back to a scan for an admissible item.
const MAX_TRIES: usize = 20;

/// A simple production-like recommender that knows clicks and the session context but not
/// tastes or dislikes: the first [`SynthConfig::context_slots`](super::SynthConfig) slots (2)
/// show popular items of the session topic, the next a popular item of the topic of a random
/// past click, further slots a globally popular or a uniformly random item (half each). It never shows an item twice in a slate nor an item the user clicked.
#[derive(Clone, Debug)]
pub struct LoggingPolicy<'w> {
    world: &'w World,
    popular: WeightedIndex<f64>,
    topic_popular: Vec<WeightedIndex<f64>>,
}

#[derive(Clone, Copy)]
enum Slot {
    Context,
    History,
    Popular,
    Explore,
}

impl<'w> LoggingPolicy<'w> {
    /// The policy over `world`'s items.
    pub fn new(world: &'w World) -> Result<Self> {
        let weights = |items: &mut dyn Iterator<Item = u32>| {
            WeightedIndex::new(
                items
                    .map(|i| world.popularity_weight(i))
                    .collect::<Vec<_>>(),
            )
            .map_err(|e| DataError::InvalidArgument(format!("synth: popularity weights: {e}")))
        };
        let popular = weights(&mut (0..world.num_items() as u32))?;
        let topic_popular = (0..world.num_topics() as u32)
            .map(|t| weights(&mut world.topic_items(t).iter().copied()))
            .collect::<Result<_>>()?;
        Ok(LoggingPolicy {
            world,
            popular,
            topic_popular,
        })
    }

    /// The next slate for a user in `state` whose clicks so far are `history` (oldest first).
    pub fn slate<R: Rng + ?Sized>(
        &self,
        state: &UserState,
        history: &[u32],
        rng: &mut R,
    ) -> Vec<u32> {
        let config = self.world.config();
        let (size, context) = (config.slate_size, config.context_slots);
        let mut slate = Vec::with_capacity(size);
        for j in 0..size {
            let slot = match j {
                _ if j < context => Slot::Context,
                _ if j == context => Slot::History,
                _ if rng.random_bool(0.5) => Slot::Popular,
                _ => Slot::Explore,
            };
            let admissible = |i: u32, slate: &[u32]| !state.has_clicked(i) && !slate.contains(&i);
            let mut pick = None;
            for _ in 0..MAX_TRIES {
                let item = self.draw(slot, state, history, rng);
                if admissible(item, &slate) {
                    pick = Some(item);
                    break;
                }
            }
            if pick.is_none() {
                let n = self.world.num_items() as u32;
                let start = rng.random_range(0..n);
                pick = (0..n)
                    .map(|k| (start + k) % n)
                    .find(|&i| admissible(i, &slate));
            }
            slate.extend(pick);
        }
        slate
    }

    fn draw<R: Rng + ?Sized>(
        &self,
        slot: Slot,
        state: &UserState,
        history: &[u32],
        rng: &mut R,
    ) -> u32 {
        let from_topic = |t: u32, rng: &mut R| {
            self.world.topic_items(t)[self.topic_popular[t as usize].sample(rng)]
        };
        match slot {
            Slot::Context => from_topic(state.session_topic(), rng),
            Slot::History if !history.is_empty() => {
                let clicked = history[rng.random_range(0..history.len())];
                from_topic(self.world.item_topic(clicked), rng)
            }
            Slot::History | Slot::Popular => self.popular.sample(rng) as u32,
            Slot::Explore => rng.random_range(0..self.world.num_items() as u32),
        }
    }
}
