//! slowfast-online: the online loop on top of training and serving — the nightly round that
//! retrains on what the devices uploaded and swaps in a verified bundle ([`retrain`]), and the
//! simulated A/B test of the four ways a phone may order its feed ([`demo`]).

pub mod demo;
pub mod error;
pub mod retrain;

pub use error::{OnlineError, Result};
