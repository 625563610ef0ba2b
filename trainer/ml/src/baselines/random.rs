//! Random: a uniform score per (query, candidate) from a seeded RNG. With 99 negatives its
//! HR@k is k/100 in expectation, which checks the harness.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Result, TrainerError};
use slowfast_data::protocol::{Query, Scorer, View};

/// Random baseline.
#[derive(Clone, Debug)]
pub struct RandomScorer {
    seed: u64,
}

impl RandomScorer {
    pub fn new(seed: u64) -> Self {
        RandomScorer { seed }
    }
}

impl Scorer for RandomScorer {
    type Error = TrainerError;

    fn view(&self) -> View {
        View::Slow
    }

    fn score(&self, queries: &[Query<'_>]) -> Result<Vec<f32>> {
        // Seeded by the query's user and candidates so scores do not depend on batching.
        Ok(queries
            .iter()
            .flat_map(|q| {
                let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ u64::from(q.user) << 32);
                rng.set_stream(
                    q.candidates
                        .iter()
                        .fold(0u64, |h, &c| h.rotate_left(7) ^ u64::from(c)),
                );
                q.candidates
                    .iter()
                    .map(move |_| rng.random::<f32>())
                    .collect::<Vec<_>>()
            })
            .collect())
    }
}
