//! The models the evaluation harness can rank with, by their results.json names.
//!
//! `Random` and `Pop` check the harness itself: Random must land at HR@10 ≈ 0.10 with 99
//! negatives, and Pop must beat it on any data with a popularity skew.

mod pop;
mod random;

pub use pop::Pop;
pub use random::RandomScorer;

use crate::data::split::Split;
use crate::error::{Result, TrainerError};
use crate::eval::protocol::Scorer;

/// Every model name of results.json, in the paper's Table 2 order (harness checks first).
pub const ALL_MODELS: [&str; 14] = [
    "Random",
    "Pop",
    "FM",
    "NeuMF",
    "GRU4Rec",
    "Caser",
    "SASRec",
    "DIN",
    "DIN+FM",
    "DIN+NeuMF",
    "DIN+GRU4Rec",
    "DIN w/ F2S",
    "MC2-SF",
    "MC2-SF+",
];

/// The models implemented so far.
pub const AVAILABLE: [&str; 2] = ["Random", "Pop"];

/// Fits the model called `name` on the training phases of `split` with `seed`.
pub fn fit(name: &str, split: &Split, seed: u64) -> Result<Box<dyn Scorer>> {
    match name {
        "Random" => Ok(Box::new(RandomScorer::new(seed))),
        "Pop" => Ok(Box::new(Pop::fit(split))),
        other if ALL_MODELS.contains(&other) => Err(TrainerError::InvalidArgument(format!(
            "model {other:?} is not implemented yet; available: {}",
            AVAILABLE.join(", ")
        ))),
        other => Err(TrainerError::InvalidArgument(format!(
            "unknown model {other:?}; known: {}",
            ALL_MODELS.join(", ")
        ))),
    }
}

/// Expands a comma-separated model list; `all` means every available model.
pub fn parse_list(list: &str) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if name.eq_ignore_ascii_case("all") {
            names.extend(AVAILABLE.iter().map(|n| n.to_string()));
        } else if let Some(known) = ALL_MODELS.iter().find(|m| m.eq_ignore_ascii_case(name)) {
            names.push(known.to_string());
        } else {
            return Err(TrainerError::InvalidArgument(format!(
                "unknown model {name:?}; known: {}",
                ALL_MODELS.join(", ")
            )));
        }
    }
    names.dedup();
    if names.is_empty() {
        return Err(TrainerError::InvalidArgument("empty model list".into()));
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_list_parsing() {
        assert_eq!(parse_list("pop, Random").unwrap(), ["Pop", "Random"]);
        assert_eq!(parse_list("all").unwrap(), AVAILABLE);
        assert!(parse_list("Popp")
            .unwrap_err()
            .to_string()
            .contains("unknown model"));
        assert!(parse_list(" , ").is_err());
    }
}
