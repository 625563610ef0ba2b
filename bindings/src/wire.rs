//! The sync protocol's records as they cross the boundary: [`slowfast_core::wire`]'s own types,
//! declared remote so that a feed is lifted straight into the core type with no copy in between.

use slowfast_core::wire::{FeedItem, FeedResponse};

/// One candidate with the slow component's prior knowledge (S2F, eq. 7).
#[uniffi::remote(Record)]
pub struct FeedItem {
    pub item: String,
    /// `e_i`, `d` floats.
    pub embedding: Vec<f32>,
    /// `r_t` of eq. 1, `d` floats.
    pub r_t: Vec<f32>,
    /// `r_n` of eq. 5, `d` floats.
    pub r_n: Vec<f32>,
    /// The slow model's logit (eq. 6); the server's own ranking.
    pub slow_score: f32,
}

/// The server's candidates for this user, best first by the slow model.
#[uniffi::remote(Record)]
pub struct FeedResponse {
    pub model_version: String,
    pub items: Vec<FeedItem>,
}
