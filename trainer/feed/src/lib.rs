//! slowfast-feed: what the sync server's feed is made of — the item table ([`Items`]) and the
//! candidate retrieval over it ([`retrieval`]) — shared by the server (`slowfast-server`) and the
//! offline re-rank protocol (`slowfast-trainer`'s `eval::rerank`), which replays the server's
//! feeds exactly.

mod items;
pub mod retrieval;

pub use items::Items;
