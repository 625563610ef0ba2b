//! The simulated phones: one `slowfast_core::SlowFast` engine per planted user, each with its
//! own store, syncing with the arm's server over loopback HTTP like an app would.
//!
//! A visit: fetch a feed (`GET /v1/feed`), order it as the arm says, show the top
//! [`SHOWN`](super::metrics::SHOWN) items the user has not clicked yet (the app shows a clicked
//! item again only after the world's revisit delay, `Dynamics::revisit_secs`, and never
//! without one, as the logging policy), let the planted user browse them
//! (`World::browse`), record the exposures and clicks on the device (durable, `r̂2` advanced by
//! GRU_n, eq. 5) and sync when the engine's thresholds say so.

use std::collections::HashMap;
use std::path::Path;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use slowfast_core::{Cancel, Config, SlowFast};

use super::metrics::{ctr, planted_ndcg10, SHOWN};
use crate::error::{OnlineError, Result};
use slowfast_data::synth::{UserState, World};
use slowfast_trainer::arms::Arm;

/// The phones' HTTP timeout: ten minutes, not the SDK's ten seconds. The demo measures how the
/// arms rank, not latency; its phones and servers share the machine's cores (100 phones per
/// arm against one server, on 2 cores in CI, with a debug build beside other jobs), where a
/// feed can queue for longer than a phone on a network would wait, and a timed-out visit
/// would end the run.
const HTTP_TIMEOUT_MS: u64 = 10 * 60 * 1000;

/// The raw id of world item `i` (the synthetic log's convention).
pub fn item_id(i: u32) -> String {
    format!("i{i}")
}

/// The world item behind a raw id.
pub fn world_item(id: &str) -> Result<u32> {
    id.strip_prefix('i')
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| {
            OnlineError::Unusable(format!("item id {id:?} is not a synthetic item `i<n>`"))
        })
}

/// What one visit showed and what the user did.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Visit {
    pub shown: usize,
    pub clicks: usize,
    /// NDCG@10 of the shown order against the planted preferences.
    pub ndcg10: f64,
    /// Items that arrived after the initial training (`World::arrival_day` ≥ 1): in the feed,
    /// and shown.
    pub new_in_feed: usize,
    pub new_shown: usize,
}

impl Visit {
    pub fn ctr(&self) -> f64 {
        ctr(self.clicks, self.shown)
    }
}

/// How a phone talks to its server.
#[derive(Clone, Debug)]
pub struct Link<'a> {
    pub server_url: &'a str,
    pub token: String,
    /// The bundle shipped with the app (installed on first start).
    pub bundle: &'a Path,
    /// `sync_now` uploads once this many events are pending.
    pub sync_max_events: usize,
}

/// One planted user's phone.
pub struct Phone {
    pub engine: SlowFast,
    pub user: u32,
    state: UserState,
    rng: ChaCha8Rng,
    /// Items the user clicked and when (seconds; the app's own record).
    clicked: HashMap<u32, i64>,
    /// The user's clock when the phone opened: simulated day `d` starts `d − 1` days later.
    opened: i64,
}

impl Phone {
    /// Opens the phone of world user `user` in `dir`: the engine installs the shipped bundle;
    /// the user continues from `state` with a random stream fixed by `seed` and the user, so
    /// every arm sees the same user and the same draws. The phones wait up to
    /// [`HTTP_TIMEOUT_MS`] for an answer.
    pub fn open(
        dir: &Path,
        link: &Link<'_>,
        user: u32,
        state: UserState,
        clicked: HashMap<u32, i64>,
        seed: u64,
    ) -> Result<Phone> {
        let mut config = Config::new(dir, link.server_url, &link.token, format!("u{user}"));
        config.initial_bundle = Some(link.bundle.to_path_buf());
        config.sync_max_events = link.sync_max_events;
        config.http_timeout_ms = HTTP_TIMEOUT_MS;
        let engine = SlowFast::open(config)?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(u64::from(user));
        Ok(Phone {
            engine,
            user,
            opened: state.clock(),
            state,
            rng,
            clicked,
        })
    }

    /// The start of simulated day `day` (from 1): the user is away until `day − 1` days after
    /// the phone opened, unless the day before's visits ran past that.
    pub fn start_day(&mut self, world: &World, day: usize) {
        let ts = self.opened + (day as i64 - 1) * slowfast_data::synth::DAY_SECS;
        world.away_until(&mut self.state, self.user, ts, &mut self.rng);
    }

    /// One visit: feed → order → show → browse → record → sync on the thresholds. The
    /// NDCG@10 ideal is drawn from items `0..catalogue`, what the server could serve.
    pub fn visit(
        &mut self,
        world: &World,
        arm: Arm,
        feed_k: usize,
        catalogue: usize,
    ) -> Result<Visit> {
        let feed = self.engine.fetch_feed(feed_k, &Cancel::default())?;
        let order = arm.order(&feed, |f| Ok(self.engine.rerank(f)?))?;
        let is_new = |id: &String| world_item(id).map(|i| world.arrival_day(i) > 0);
        let mut new_in_feed = 0;
        for id in &order {
            new_in_feed += usize::from(is_new(id)?);
        }
        let mut shown = Vec::with_capacity(SHOWN);
        let now = self.state.clock();
        let reshow = world.dynamics().revisit_secs;
        for id in &order {
            let item = world_item(id)?;
            let hidden = self
                .clicked
                .get(&item)
                .is_some_and(|&at| reshow.is_none_or(|d| now - at < d));
            if !hidden {
                shown.push(item);
                if shown.len() == SHOWN {
                    break;
                }
            }
        }
        let ndcg10 = planted_ndcg10(world, &self.state, self.user, &shown, catalogue);
        let b = world.browse(&mut self.state, self.user, &shown, &mut self.rng);
        for (j, &item) in shown.iter().enumerate() {
            if !b.clicked.contains(&j) {
                self.engine
                    .record_exposure(&item_id(item), b.shown_at * 1000)?;
            }
        }
        for (&j, &ts) in b.clicked.iter().zip(&b.clicked_at) {
            self.clicked.insert(shown[j], b.shown_at);
            self.engine.record_click(&item_id(shown[j]), ts * 1000)?;
        }
        self.engine.sync_now(&Cancel::default())?;
        Ok(Visit {
            shown: shown.len(),
            clicks: b.clicked.len(),
            ndcg10,
            new_in_feed,
            new_shown: shown.iter().filter(|&&i| world.arrival_day(i) > 0).count(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_ids_round_trip_and_foreign_ids_are_refused() {
        assert_eq!(world_item(&item_id(42)).unwrap(), 42);
        for bad in ["42", "ix", "", "u3"] {
            assert!(world_item(bad).is_err(), "{bad}");
        }
    }
}
