//! Small data sets and untrained models for tests: this crate's, and with the `testing`
//! feature those of the crates above it (the re-rank protocol against the server's store).

use std::sync::Arc;

use slowfast_data::protocol::View;
use slowfast_data::synth::{generate, SynthConfig};
use slowfast_data::Dataset;

use crate::models::slowfast::{PriorSource, SlowFastNet, SlowFastScorer, Variant};
use crate::models::ModelConfig;

/// A synthetic data set of 30 users and 120 items, 30 to 40 clicks each.
pub fn tiny() -> Dataset {
    let cfg = SynthConfig {
        users: 30,
        items: 120,
        min_clicks_per_user: 30,
        max_clicks_per_user: 40,
        ..SynthConfig::default()
    };
    Dataset::from_log("tiny", generate(&cfg).expect("the tiny config is valid"))
        .expect("the tiny log has users to split")
}

/// An MC²-SF model of `data`'s items, initialised from seed 3 and not trained.
pub fn untrained(data: &Dataset) -> Arc<SlowFastNet> {
    let model = SlowFastNet::new(
        Variant::Mc2sf,
        data.split.num_items,
        ModelConfig::default(),
        3,
    )
    .expect("the default model config is valid");
    Arc::new(model)
}

/// `model`'s slow component as the server ranks with it.
pub fn slow(model: &Arc<SlowFastNet>) -> SlowFastScorer {
    SlowFastScorer {
        model: model.clone(),
        view: View::Slow,
        priors: PriorSource::Slow,
    }
}
