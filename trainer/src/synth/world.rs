//! The planted world (items, users, tastes, dislikes) and the user's click model.

use std::collections::HashMap;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp, Gamma};
use serde::{Deserialize, Serialize};

use super::SynthConfig;
use crate::error::{Result, TrainerError};

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
            return Err(TrainerError::InvalidArgument(
                "world dynamics: the revisit delay must not be negative".into(),
            ));
        }
        if self
            .fatigue_half_life_secs
            .is_some_and(|h| !(h.is_finite() && h > 0.0))
        {
            return Err(TrainerError::InvalidArgument(
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

        let gamma = Gamma::new(cfg.taste_concentration, 1.0).map_err(|e| {
            TrainerError::InvalidArgument(format!("synth: taste_concentration: {e}"))
        })?;
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
            .map_err(|e| TrainerError::InvalidArgument(format!("synth: session gap: {e}")))?;
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

    /// A fresh simulation state for `user`: a start time within 14 days after `start_ts` and
    /// a first session. Fading interests have faded already, as after the logged history.
    pub fn new_user_state<R: Rng + ?Sized>(&self, user: u32, rng: &mut R) -> UserState {
        self.user_state(user, 0, rng)
    }

    /// [`World::new_user_state`] with the fading topics disliked from `fade_onset` clicks on.
    pub(super) fn user_state<R: Rng + ?Sized>(
        &self,
        user: u32,
        fade_onset: usize,
        rng: &mut R,
    ) -> UserState {
        let clock = self.config.start_ts + rng.random_range(0..START_SPREAD_SECS);
        let mut state = UserState {
            session_topic: 0,
            session_steps_left: 0,
            clock,
            fatigue: HashMap::new(),
            clicked: HashMap::new(),
            fade_onset,
            aversion: None,
        };
        (state.session_topic, state.session_steps_left) = self.draw_session(&state, user, rng);
        state
    }

    /// Shows `slate` to `user` and returns the index of the clicked item, if any; advances
    /// fatigue, session and clock (see [`World::step`]).
    pub fn respond<R: Rng + ?Sized>(
        &self,
        state: &mut UserState,
        user: u32,
        slate: &[u32],
        rng: &mut R,
    ) -> Option<usize> {
        self.step(state, user, slate, rng).clicked
    }

    /// [`World::respond`] with the times: the slate is shown at the state's clock, a click
    /// follows 2–20 s later. Every unclicked slate item gains one fatigue count. The next slate
    /// comes 20–120 s later; when the session's steps run out, a new session with a fresh
    /// topic starts after a gap of 30 min + Exp(mean 18 h). Panics if an item is out of range.
    pub fn step<R: Rng + ?Sized>(
        &self,
        state: &mut UserState,
        user: u32,
        slate: &[u32],
        rng: &mut R,
    ) -> Response {
        let utilities: Vec<Option<f32>> = slate
            .iter()
            .map(|&i| self.utility(state, user, i))
            .collect();
        let no_click = f64::from(self.config.click.no_click);
        let top = utilities
            .iter()
            .flatten()
            .map(|&u| f64::from(u))
            .fold(no_click, f64::max);
        let weights: Vec<f64> = utilities
            .iter()
            .map(|u| u.map_or(0.0, |u| (f64::from(u) - top).exp()))
            .collect();
        let total = (no_click - top).exp() + weights.iter().sum::<f64>();
        let mut draw = rng.random::<f64>() * total;
        let mut clicked = None;
        for (j, &w) in weights.iter().enumerate() {
            if draw < w {
                clicked = Some(j);
                break;
            }
            draw -= w;
        }

        let shown_at = state.clock;
        let clicked_at = clicked.map(|_| shown_at + rng.random_range(DWELL_SECS));
        self.advance(state, user, slate, &|j| clicked == Some(j), clicked_at, rng);
        Response {
            clicked,
            shown_at,
            clicked_at,
        }
    }

    /// The online feed: `feed` is shown at once (at the state's clock) and the user considers
    /// each item on its own, as a one-item slate of the click model: a click with probability
    /// `σ(utility − no_click)`, never on an item clicked before. Clicks follow each other 2–20 s
    /// apart, in feed order. Fatigue, session and clock then advance as after one slate.
    pub fn browse<R: Rng + ?Sized>(
        &self,
        state: &mut UserState,
        user: u32,
        feed: &[u32],
        rng: &mut R,
    ) -> Browse {
        let no_click = self.config.click.no_click;
        let mut clicked = Vec::new();
        for (j, &item) in feed.iter().enumerate() {
            if let Some(u) = self.utility(state, user, item) {
                let p = 1.0 / (1.0 + f64::from(no_click - u).exp());
                if rng.random::<f64>() < p {
                    clicked.push(j);
                }
            }
        }
        let shown_at = state.clock;
        let mut ts = shown_at;
        let clicked_at: Vec<i64> = clicked
            .iter()
            .map(|_| {
                ts += rng.random_range(DWELL_SECS);
                ts
            })
            .collect();
        let last = clicked_at.last().copied();
        self.advance(state, user, feed, &|j| clicked.contains(&j), last, rng);
        Browse {
            clicked,
            shown_at,
            clicked_at,
        }
    }

    /// After a slate: clicked items are remembered, the others gain one fatigue count; the
    /// next slate comes 20–120 s after the slate's last event; when the session's steps run
    /// out, a new session with a fresh topic starts after a gap of 30 min + Exp(mean 18 h).
    fn advance<R: Rng + ?Sized>(
        &self,
        state: &mut UserState,
        user: u32,
        slate: &[u32],
        clicked: &dyn Fn(usize) -> bool,
        last_click: Option<i64>,
        rng: &mut R,
    ) {
        for (j, &item) in slate.iter().enumerate() {
            if clicked(j) {
                state.clicked.insert(item, state.clock);
            } else {
                let shows = self.fatigue_now(state, item) + 1.0;
                state.fatigue.insert(
                    item,
                    Fatigue {
                        shows,
                        at: state.clock,
                    },
                );
            }
        }
        state.clock = last_click.unwrap_or(state.clock) + rng.random_range(STEP_GAP_SECS);
        state.session_steps_left = state.session_steps_left.saturating_sub(1);
        if state.session_steps_left == 0 {
            let gap = SESSION_GAP_MIN_SECS + self.session_gap.sample(rng);
            state.clock += gap as i64;
            self.update_aversion(state, user, rng);
            (state.session_topic, state.session_steps_left) = self.draw_session(state, user, rng);
        }
    }

    /// The user is away until `ts` (seconds): if that is after the state's clock, the clock
    /// moves to it and the user comes back with a new session (as after a session gap). The
    /// online simulation calls it at the start of each simulated day, so that a day of visits
    /// spans a day of the user's clock.
    pub fn away_until<R: Rng + ?Sized>(
        &self,
        state: &mut UserState,
        user: u32,
        ts: i64,
        rng: &mut R,
    ) {
        if ts <= state.clock {
            return;
        }
        state.clock = ts;
        self.update_aversion(state, user, rng);
        (state.session_topic, state.session_steps_left) = self.draw_session(state, user, rng);
    }

    /// Between sessions: an aversion that has run its clicks ends; without one, a new one starts
    /// with probability `aversion_rate`, on one of the user's top three taste topics that is not
    /// disliked now (drawn by taste), for 15–40 clicks. Draws nothing at rate 0.
    fn update_aversion<R: Rng + ?Sized>(&self, state: &mut UserState, user: u32, rng: &mut R) {
        if state.averted().is_some() || self.config.aversion_rate <= 0.0 {
            return;
        }
        state.aversion = None;
        if !rng.random_bool(self.config.aversion_rate) {
            return;
        }
        let taste = self.taste(user);
        let pool: Vec<u32> = top_topics(taste)
            .into_iter()
            .take(PROTECTED_TOPICS)
            .map(|t| t as u32)
            .filter(|&t| !self.dislikes_now(state, user, t) && taste[t as usize] > 0.0)
            .collect();
        let total: f32 = pool.iter().map(|&t| taste[t as usize]).sum();
        let mut draw = rng.random::<f32>() * total;
        let Some(mut topic) = pool.last().copied() else {
            return;
        };
        for &t in &pool {
            if draw < taste[t as usize] {
                topic = t;
                break;
            }
            draw -= taste[t as usize];
        }
        let until = state.clicked.len() + rng.random_range(AVERSION_CLICKS);
        state.aversion = Some((topic, until));
    }

    /// A session topic (from the taste with probability `session_in_taste`, else uniform
    /// among the topics not disliked in `state`) and its length in steps.
    fn draw_session<R: Rng + ?Sized>(
        &self,
        state: &UserState,
        user: u32,
        rng: &mut R,
    ) -> (u32, u32) {
        let cfg = &self.config;
        let taste = self.taste(user);
        let liked: Vec<u32> = (0..cfg.topics as u32)
            .filter(|&t| !self.dislikes_now(state, user, t))
            .collect();
        let total: f64 = liked.iter().map(|&t| f64::from(taste[t as usize])).sum();
        let topic = if rng.random_bool(cfg.session_in_taste) && total > 0.0 {
            let mut draw = rng.random::<f64>() * total;
            let mut pick = liked[liked.len() - 1];
            for &t in &liked {
                let w = f64::from(taste[t as usize]);
                if draw < w {
                    pick = t;
                    break;
                }
                draw -= w;
            }
            pick
        } else {
            liked[rng.random_range(0..liked.len())]
        };
        let steps = rng.random_range(cfg.session_min_steps..=cfg.session_max_steps);
        (topic, u32::try_from(steps).unwrap_or(u32::MAX))
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

/// One user's simulation state: current session, fatigue counts, clicked items and clock.
#[derive(Clone, Debug)]
pub struct UserState {
    session_topic: u32,
    session_steps_left: u32,
    clock: i64,
    /// Unclicked shows per item.
    fatigue: HashMap<u32, Fatigue>,
    /// Clicked items and the clock of their last click's feed.
    clicked: HashMap<u32, i64>,
    /// The click count from which the user's fading topics count as disliked.
    fade_onset: usize,
    /// A temporary aversion: the topic and the click count at which it ends.
    aversion: Option<(u32, usize)>,
}

impl UserState {
    /// The topic of the current session.
    pub fn session_topic(&self) -> u32 {
        self.session_topic
    }

    /// Steps left in the current session (≥ 1).
    pub fn session_steps_left(&self) -> u32 {
        self.session_steps_left
    }

    /// When the next slate is shown (seconds since the Unix epoch).
    pub fn clock(&self) -> i64 {
        self.clock
    }

    /// How often `item` was shown to this user without a click, as of its last show (before
    /// any recovery since: [`World::fatigue_now`]).
    pub fn fatigue(&self, item: u32) -> f64 {
        self.fatigue.get(&item).map_or(0.0, |f| f.shows)
    }

    /// Whether the user clicked `item` already.
    pub fn has_clicked(&self, item: u32) -> bool {
        self.clicked.contains_key(&item)
    }

    /// Number of items clicked so far.
    pub fn clicks(&self) -> usize {
        self.clicked.len()
    }

    /// The topic of the user's current temporary aversion, if any
    /// ([`SynthConfig::aversion_rate`]).
    pub fn averted(&self) -> Option<u32> {
        self.aversion
            .filter(|&(_, until)| self.clicked.len() < until)
            .map(|(t, _)| t)
    }
}

/// An item's unclicked-show count as of its last show, and that show's clock.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Fatigue {
    shows: f64,
    at: i64,
}

/// What happened to one online feed ([`World::browse`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Browse {
    /// Indices of the clicked feed items, in feed order.
    pub clicked: Vec<usize>,
    /// When the feed was shown: the time of its exposures.
    pub shown_at: i64,
    /// When each click happened, in the order of `clicked`.
    pub clicked_at: Vec<i64>,
}

/// What happened to one slate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response {
    /// Index of the clicked slate item, if any.
    pub clicked: Option<usize>,
    /// When the slate was shown: the time of its exposures.
    pub shown_at: i64,
    /// When the click happened (after `shown_at`), if any.
    pub clicked_at: Option<i64>,
}
