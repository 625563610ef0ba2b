//! The planted world (items, users, tastes, dislikes) and the user's click model.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp, Gamma};
use serde::{Deserialize, Serialize};

use super::SynthConfig;
use crate::error::{DataError, Result};

mod user;

pub use user::{Browse, Response, UserState};

/// A user's top taste topics are never disliked.
pub(super) const PROTECTED_TOPICS: usize = 3;
/// Seconds from a slate to the click on it.
const DWELL_SECS: std::ops::RangeInclusive<i64> = 2..=20;
/// Seconds from one slate (or its click) to the next slate of the session.
const STEP_GAP_SECS: std::ops::RangeInclusive<i64> = 20..=120;
/// Gap between sessions: this minimum plus an exponential with the mean below.
pub(super) const SESSION_GAP_MIN_SECS: f64 = 1800.0;
const SESSION_GAP_MEAN_SECS: f64 = 18.0 * 3600.0;
/// A fading interest fades this many clicks before the end of the user's logged history: the
/// split's slow-training phase ends 10 clicks before it, so the fade starts 5–20 clicks before
/// that, inside DIN's 50-click window and with the last exposures of the slow phase after it.
const FADE_LEAD_CLICKS: std::ops::RangeInclusive<usize> = 15..=30;
/// A temporary aversion lasts this many of the user's clicks ([`SynthConfig::aversion_rate`]).
const AVERSION_CLICKS: std::ops::RangeInclusive<usize> = 15..=40;
/// Users start within this many seconds after `start_ts`.
const START_SPREAD_SECS: i64 = 14 * 86_400;

/// The dynamics of a live feed that the logged history leaves out ([`World::with_dynamics`]):
/// without them a simulated user who keeps visiting runs out of items, because the catalogue
/// is fixed, a clicked item is never clicked again and fatigue never wears off. All off by
/// default (`Dynamics::default()`), which keeps `slowfast synth` and every logged history
/// unchanged; `slowfast demo` turns them on ([`Dynamics::live_feed`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Dynamics {
    /// New items per simulated day ([`World::with_arrivals`]): a topic drawn uniformly (the
    /// catalogue's topics are balanced) and a popularity rank drawn uniformly among the
    /// catalogue's ranks, so new items are as popular as the catalogue's items on average.
    pub arrivals_per_day: usize,
    /// A clicked item becomes clickable again this many seconds (of the user's clock) after
    /// its last click, with its ordinary utility: people replay a song or reread a favourite.
    /// `None`: never clicked twice (the logged history).
    pub revisit_secs: Option<i64>,
    /// An item's unclicked-show count (the fatigue term of the click model) halves every this
    /// many seconds without a show: fatigue wears off. `None`: it never does (the logged
    /// history).
    pub fatigue_half_life_secs: Option<f64>,
}

impl Dynamics {
    /// A live feed's dynamics, chosen from what a production feed has (not fitted to any
    /// outcome): a twentieth of the catalogue arrives per day (50 items on the default 1,000),
    /// a liked item may be clicked again a day after its last click, and fatigue halves per
    /// day without a show.
    pub fn live_feed(catalogue: usize) -> Dynamics {
        Dynamics {
            arrivals_per_day: catalogue.div_ceil(20),
            revisit_secs: Some(DAY_SECS),
            fatigue_half_life_secs: Some(DAY_SECS as f64),
        }
    }

    /// Checks the fields; the error names the bad one.
    pub fn validate(&self) -> Result<()> {
        if self.revisit_secs.is_some_and(|s| s < 0) {
            return Err(DataError::InvalidArgument(
                "world dynamics: the revisit delay must not be negative".into(),
            ));
        }
        if self
            .fatigue_half_life_secs
            .is_some_and(|h| !(h.is_finite() && h > 0.0))
        {
            return Err(DataError::InvalidArgument(
                "world dynamics: the fatigue half-life must be positive and finite".into(),
            ));
        }
        Ok(())
    }
}

/// Seconds per day.
pub const DAY_SECS: i64 = 86_400;

/// Items' topics and popularity, users' long-term tastes and hidden dislikes, and the click
/// model over them (see the module documentation).
#[derive(Clone, Debug)]
pub struct World {
    config: SynthConfig,
    item_topic: Vec<u32>,
    /// Zipf weight `(rank + 1)^-s`, the logging policy's popularity.
    item_weight: Vec<f64>,
    /// `1 − ln(rank + 1) / ln(items)`: the popularity term of the click model.
    item_popularity: Vec<f32>,
    topic_items: Vec<Vec<u32>>,
    /// `users × topics`, each row scaled to a maximum of 1; 0 on disliked topics.
    taste: Vec<f32>,
    /// `users × topics`.
    disliked: Vec<bool>,
    /// `users × topics`: the top taste topics that become disliked `fade_lead[user]` clicks
    /// before the end of the user's history ([`SynthConfig::fading_topics`]).
    fading: Vec<bool>,
    /// Per user, in clicks (see [`FADE_LEAD_CLICKS`]).
    fade_lead: Vec<usize>,
    session_gap: Exp<f64>,
    /// The simulated day each item arrived on: 0 for the initial catalogue, `d ≥ 1` for the
    /// arrivals of day `d` ([`World::with_arrivals`]); ascending, since arrivals are appended.
    item_arrival: Vec<u32>,
    dynamics: Dynamics,
}

impl World {
    /// Draws the world of `cfg` (stream 0 of the seed).
    pub fn new(cfg: &SynthConfig) -> Result<World> {
        cfg.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let (n_items, n_topics) = (cfg.items, cfg.topics);

        // Balanced topics: a random permutation dealt round-robin.
        let mut order: Vec<u32> = (0..n_items as u32).collect();
        order.shuffle(&mut rng);
        let mut item_topic = vec![0u32; n_items];
        let mut topic_items = vec![Vec::new(); n_topics];
        for (k, &item) in order.iter().enumerate() {
            item_topic[item as usize] = (k % n_topics) as u32;
        }
        for (item, &t) in item_topic.iter().enumerate() {
            topic_items[t as usize].push(item as u32);
        }

        // Popularity ranks, independent of topics.
        order.shuffle(&mut rng);
        let mut item_weight = vec![0.0; n_items];
        let mut item_popularity = vec![1.0f32; n_items];
        let log_n = (n_items as f64).ln();
        for (rank, &item) in order.iter().enumerate() {
            let r = rank as f64 + 1.0;
            item_weight[item as usize] = r.powf(-cfg.zipf_exponent);
            if n_items > 1 {
                item_popularity[item as usize] = (1.0 - r.ln() / log_n) as f32;
            }
        }

        let gamma = Gamma::new(cfg.taste_concentration, 1.0)
            .map_err(|e| DataError::InvalidArgument(format!("synth: taste_concentration: {e}")))?;
        let mut taste = vec![0.0f32; cfg.users * n_topics];
        let mut disliked = vec![false; cfg.users * n_topics];
        for (row, bad) in taste
            .chunks_mut(n_topics)
            .zip(disliked.chunks_mut(n_topics))
        {
            draw_user(row, bad, cfg.disliked_topics, &gamma, &mut rng);
        }
        // Drawn after every taste, and only when asked for, so that a config without fading
        // topics draws the same world as before the option existed.
        let mut fading = vec![false; cfg.users * n_topics];
        let mut fade_lead = vec![0; cfg.users];
        if cfg.fading_topics > 0 {
            for ((row, fades), lead) in taste
                .chunks(n_topics)
                .zip(fading.chunks_mut(n_topics))
                .zip(&mut fade_lead)
            {
                for t in top_topics(row).into_iter().take(cfg.fading_topics) {
                    fades[t] = true;
                }
                *lead = rng.random_range(FADE_LEAD_CLICKS);
            }
        }

        let session_gap = Exp::new(1.0 / SESSION_GAP_MEAN_SECS)
            .map_err(|e| DataError::InvalidArgument(format!("synth: session gap: {e}")))?;
        Ok(World {
            config: cfg.clone(),
            item_topic,
            item_weight,
            item_popularity,
            topic_items,
            taste,
            disliked,
            fading,
            fade_lead,
            session_gap,
            item_arrival: vec![0; n_items],
            dynamics: Dynamics::default(),
        })
    }

    /// The world with `dynamics` on (revisits and fatigue recovery; see
    /// [`World::with_arrivals`] for the arrivals).
    pub fn with_dynamics(mut self, dynamics: Dynamics) -> Result<World> {
        dynamics.validate()?;
        self.dynamics = dynamics;
        Ok(self)
    }

    /// The dynamics the world runs with.
    pub fn dynamics(&self) -> &Dynamics {
        &self.dynamics
    }

    /// Appends the arrivals of days `1..=days` ([`Dynamics::arrivals_per_day`] each), drawn
    /// from `seed`: each new item gets a uniform topic and a popularity rank drawn uniformly
    /// among the initial catalogue's ranks (Zipf weight and log-popularity as for the rank).
    /// The ids continue the catalogue's (`i1000, i1001, …` on the default), in arrival order.
    pub fn with_arrivals(mut self, days: usize, seed: u64) -> World {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(u64::MAX);
        let initial = self.config.items;
        let log_n = (initial as f64).ln();
        for day in 1..=days as u32 {
            for _ in 0..self.dynamics.arrivals_per_day {
                let item = self.item_topic.len() as u32;
                let topic = rng.random_range(0..self.config.topics as u32);
                let r = rng.random_range(1..=initial) as f64;
                self.item_topic.push(topic);
                self.topic_items[topic as usize].push(item);
                self.item_weight.push(r.powf(-self.config.zipf_exponent));
                self.item_popularity.push(if initial > 1 {
                    (1.0 - r.ln() / log_n) as f32
                } else {
                    1.0
                });
                self.item_arrival.push(day);
            }
        }
        self
    }

    /// The items arrived by the end of day `day` (day 0: the initial catalogue) are
    /// `0..items_by_day(day)`.
    pub fn items_by_day(&self, day: usize) -> usize {
        self.item_arrival.partition_point(|&d| d as usize <= day)
    }

    /// The day `item` arrived on (0: the initial catalogue).
    pub fn arrival_day(&self, item: u32) -> u32 {
        self.item_arrival[item as usize]
    }

    /// The configuration the world was drawn from.
    pub fn config(&self) -> &SynthConfig {
        &self.config
    }

    /// Number of users.
    pub fn num_users(&self) -> usize {
        self.config.users
    }

    /// Number of items, arrivals included.
    pub fn num_items(&self) -> usize {
        self.item_topic.len()
    }

    /// Number of topics.
    pub fn num_topics(&self) -> usize {
        self.config.topics
    }

    /// The topic of `item`. Panics if `item` is out of range, as do the accessors below.
    pub fn item_topic(&self, item: u32) -> u32 {
        self.item_topic[item as usize]
    }

    /// The items of `topic`, ascending.
    pub fn topic_items(&self, topic: u32) -> &[u32] {
        &self.topic_items[topic as usize]
    }

    /// The Zipf weight `(rank + 1)^-s` of `item` (unnormalised).
    pub fn popularity_weight(&self, item: u32) -> f64 {
        self.item_weight[item as usize]
    }

    /// The normalised log-popularity `1 − ln(rank + 1) / ln(items) ∈ [0, 1]` of `item`.
    pub fn popularity(&self, item: u32) -> f32 {
        self.item_popularity[item as usize]
    }

    /// The long-term taste of `user` per topic, scaled so that the top topic is 1.
    pub fn taste(&self, user: u32) -> &[f32] {
        let t = self.config.topics;
        &self.taste[user as usize * t..][..t]
    }

    /// Whether `user` (secretly) dislikes `topic`.
    pub fn dislikes(&self, user: u32, topic: u32) -> bool {
        self.disliked[user as usize * self.config.topics + topic as usize]
    }

    /// The topics `user` dislikes, ascending.
    pub fn disliked_topics(&self, user: u32) -> Vec<u32> {
        (0..self.config.topics as u32)
            .filter(|&t| self.dislikes(user, t))
            .collect()
    }

    /// Whether `topic` is one of `user`'s fading interests ([`SynthConfig::fading_topics`]).
    pub fn fades(&self, user: u32, topic: u32) -> bool {
        self.fading[user as usize * self.config.topics + topic as usize]
    }

    /// How many clicks before the end of `user`'s logged history their fading topics fade.
    pub fn fade_lead(&self, user: u32) -> usize {
        self.fade_lead[user as usize]
    }

    /// Whether `user` dislikes `topic` in `state`: a hidden dislike, or a fading interest once
    /// the user has made the state's fade-onset count of clicks.
    pub fn dislikes_now(&self, state: &UserState, user: u32, topic: u32) -> bool {
        self.dislikes(user, topic)
            || (self.fades(user, topic) && state.clicked.len() >= state.fade_onset)
            || state.averted() == Some(topic)
    }

    /// The planted long-term affinity of `user` for `item` from the end of the logged history
    /// on (fading interests have faded by then): taste, popularity and dislike, without
    /// session or fatigue. Higher is better; use it as the relevance for NDCG against planted
    /// preferences.
    pub fn preference(&self, user: u32, item: u32) -> f32 {
        let topic = self.item_topic(item);
        self.affinity(
            user,
            item,
            self.dislikes(user, topic) || self.fades(user, topic),
        )
    }

    /// Taste and popularity, minus the dislike penalty when `disliked`.
    fn affinity(&self, user: u32, item: u32, disliked: bool) -> f32 {
        let c = &self.config.click;
        let topic = self.item_topic(item);
        let dislike = if disliked { c.dislike } else { 0.0 };
        c.taste * self.taste(user)[topic as usize] + c.popularity * self.popularity(item) - dislike
    }

    /// The utility of `item` to `user` now: taste, popularity and the dislikes of now
    /// ([`World::dislikes_now`]), plus the session bonus, minus fatigue (the unclicked-show
    /// count, recovered as [`Dynamics::fatigue_half_life_secs`] says, capped); `None` for an
    /// item the user cannot click now ([`World::can_click`]).
    pub fn utility(&self, state: &UserState, user: u32, item: u32) -> Option<f32> {
        if !self.can_click(state, item) {
            return None;
        }
        let c = &self.config.click;
        let session = if self.item_topic(item) == state.session_topic {
            c.session
        } else {
            0.0
        };
        let shows = self.fatigue_now(state, item).min(f64::from(c.fatigue_cap));
        let fatigue = c.fatigue * shows as f32;
        let disliked = self.dislikes_now(state, user, self.item_topic(item));
        Some(self.affinity(user, item, disliked) + session - fatigue)
    }

    /// Whether `user` may click `item` now: never clicked, or (with
    /// [`Dynamics::revisit_secs`]) last clicked at least that long before the state's clock.
    pub fn can_click(&self, state: &UserState, item: u32) -> bool {
        match (state.clicked.get(&item), self.dynamics.revisit_secs) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(&at), Some(delay)) => state.clock - at >= delay,
        }
    }

    /// The unclicked-show count of `item` at the state's clock: the count as of its last show,
    /// halved per [`Dynamics::fatigue_half_life_secs`] since then (kept without it).
    pub fn fatigue_now(&self, state: &UserState, item: u32) -> f64 {
        let Some(f) = state.fatigue.get(&item) else {
            return 0.0;
        };
        match self.dynamics.fatigue_half_life_secs {
            None => f.shows,
            Some(half) => f.shows * 0.5f64.powf((state.clock - f.at).max(0) as f64 / half),
        }
    }
}

/// Draws one user's taste row (Dirichlet via normalised Gammas, scaled to max 1) and marks
/// `n_disliked` topics outside the top three as disliked (taste 0).
fn draw_user(
    taste: &mut [f32],
    disliked: &mut [bool],
    n_disliked: usize,
    gamma: &Gamma<f64>,
    rng: &mut ChaCha8Rng,
) {
    let draws: Vec<f64> = taste.iter().map(|_| gamma.sample(rng)).collect();
    let max = draws.iter().copied().fold(0.0, f64::max);
    for (t, &g) in taste.iter_mut().zip(&draws) {
        *t = if max > 0.0 && max.is_finite() {
            (g / max) as f32
        } else {
            1.0
        };
    }
    let mut by_taste = top_topics(taste);
    let protected = PROTECTED_TOPICS.min(taste.len() - n_disliked);
    let mut pool = by_taste.split_off(protected);
    pool.shuffle(rng);
    for &t in pool.iter().take(n_disliked) {
        disliked[t] = true;
        taste[t] = 0.0;
    }
}

/// The topics by decreasing taste (ties by index).
fn top_topics(taste: &[f32]) -> Vec<usize> {
    let mut by_taste: Vec<usize> = (0..taste.len()).collect();
    by_taste.sort_by(|&a, &b| taste[b].total_cmp(&taste[a]).then(a.cmp(&b)));
    by_taste
}
