//! A user over time: the simulation state of one user, and how the user responds to what the
//! world shows (a click or none, dwell, fatigue, sessions, temporary aversions).

use std::collections::HashMap;

use rand::Rng;
use rand_distr::Distribution;

use super::{
    top_topics, World, AVERSION_CLICKS, DWELL_SECS, PROTECTED_TOPICS, SESSION_GAP_MIN_SECS,
    START_SPREAD_SECS, STEP_GAP_SECS,
};

impl World {
    /// A fresh simulation state for `user`: a start time within 14 days after `start_ts` and
    /// a first session. Fading interests have faded already, as after the logged history.
    pub fn new_user_state<R: Rng + ?Sized>(&self, user: u32, rng: &mut R) -> UserState {
        self.user_state(user, 0, rng)
    }

    /// [`World::new_user_state`] with the fading topics disliked from `fade_onset` clicks on.
    pub(in crate::synth) fn user_state<R: Rng + ?Sized>(
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

/// One user's simulation state: current session, fatigue counts, clicked items and clock.
#[derive(Clone, Debug)]
pub struct UserState {
    pub(super) session_topic: u32,
    pub(super) session_steps_left: u32,
    pub(super) clock: i64,
    /// Unclicked shows per item.
    pub(super) fatigue: HashMap<u32, Fatigue>,
    /// Clicked items and the clock of their last click's feed.
    pub(super) clicked: HashMap<u32, i64>,
    /// The click count from which the user's fading topics count as disliked.
    pub(super) fade_onset: usize,
    /// A temporary aversion: the topic and the click count at which it ends.
    pub(super) aversion: Option<(u32, usize)>,
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
pub(super) struct Fatigue {
    pub(super) shows: f64,
    pub(super) at: i64,
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
