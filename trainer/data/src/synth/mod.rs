//! The synthetic event log: the embedded default data set for demos and tests (docs/architecture.md §4).
//!
//! Real data sets cannot be redistributed, so `slowfast synth` simulates one whose signals are
//! planted and known, one per component of MC²-SF (paper §4). Everything is drawn from
//! [`ChaCha8Rng`] seeded by [`SynthConfig::seed`]: the same config and seed give a
//! byte-identical log. Stream 0 draws the world (items, then users in order), stream `n + 1`
//! user `n`'s history, so adding users leaves the histories of the first ones unchanged.
//!
//! # The world ([`World`])
//!
//! - **Items** have one topic (topics are balanced, `items / topics` items each) and a Zipf
//!   popularity rank (weight `(rank + 1)^-s`, s = 1.3), drawn independently of the topic.
//! - **Users** have a sparse long-term taste `θ_u ~ Dirichlet(α)` over the topics (α = 0.1:
//!   one to three topics carry most of the mass), scaled so that the top topic is 1, and a few
//!   hidden **disliked** topics drawn outside their top three (their taste is set to 0).
//! - Optionally ([`SynthConfig::fading_topics`], 0 by default, `slowfast synth
//!   --fading-topics N`) a user's top N taste topics are **fading interests**: 15–30 clicks
//!   before the end of the user's history (inside the slow-training phase, which ends 10
//!   clicks before it) they start to count as disliked (the dislike penalty, no more
//!   sessions), while the logging policy keeps showing them (the *history* slot draws from
//!   past clicks).
//! - Optionally ([`SynthConfig::aversion_rate`], 0 by default, `slowfast synth
//!   --aversion-rate P`) users have **temporary aversions**, boredom with what they consume
//!   most: at each session break a user without one starts one with probability P, on one of
//!   their top three taste topics (drawn by taste), for the next 15–40 clicks. While it is on
//!   the topic counts as disliked (the dislike penalty, no sessions) and the logging policy
//!   keeps showing it (the *history* slot draws from past clicks); then it ends and may recur.
//! - **Sessions**: a user's history is a run of sessions of 8–24 steps separated by gaps
//!   (30 min + Exp(mean 18 h)). Each session has a topic, drawn from `θ_u` with probability
//!   `session_in_taste` (0.5) and otherwise uniformly among the non-disliked topics, so about
//!   half the sessions drift outside the long-term taste. Each new session draws its topic
//!   afresh, usually a different one.
//!
//! # A step: the logging policy shows a slate, the user clicks at most one item
//!
//! The built-in [`LoggingPolicy`] fills a slate of `slate_size` (4, `slowfast synth
//! --slate-size`) items, never repeating an item the user already clicked: the first
//! `context_slots` (2, `--context-slots`) are *context* (popular items of the session topic: the
//! tab or search the user opened the session with), the next is *history* (a popular item of the
//! topic of a random past click), further slots are *popular* (global Zipf) or *explore*
//! (uniform), half each. The policy does not know tastes or dislikes. As a production feed
//! does, it shows more of what the user browses now than the user clicks, so about half of the
//! unclicked exposures are on the session topic (0.47; 0.20 with one context slot, the test
//! `context_slots_show_the_session_topic_in_the_exposures`) and the negative memory folded
//! from them says what the user is browsing (the premise of F2S, paper §4.3); the last slot
//! still shows the hidden dislikes now and then.
//!
//! On 3-item slates with one context slot (`--slate-size 3 --context-slots 1`, the log of
//! `docs/results/synthetic/slate3-context1/`) only about a quarter of the unclicked exposures
//! are on the session topic, the negative memory says little the clicks do not, and `DIN w/
//! F2S` stays level with DIN (`docs/results/slate3.md`).
//!
//! The user ([`World::respond`]) picks one slate item or none by a softmax over utilities
//! (multinomial logit), with a no-click option of utility `no_click` (1.5):
//!
//! ```text
//! utility(u, i) = 3.0·θ_u[t_i] + 3.0·[t_i = session topic] + 2.5·pop_i
//!                 − 6.0·[t_i disliked by u] − 0.8·min(unclicked shows of i to u, 4)
//! pop_i = 1 − ln(rank_i + 1) / ln(items)  ∈ [0, 1]
//! ```
//!
//! An already clicked item is never clicked again. The clicked item becomes a `Click` event,
//! the rest of the slate `Exposure` events. [`World::preference`] is the planted long-term part
//! (`θ`, popularity, dislike) without session or fatigue, for NDCG against planted preferences.
//!
//! # Planted signals
//!
//! | planted signal | where it shows in the log | MC²-SF component that should pick it up |
//! |---|---|---|
//! | long-term taste `θ_u` | clicks concentrate on 1–3 topics over the whole history | slow DIN over `H^S` (eq. 1) |
//! | session drift | runs of consecutive clicks on one topic, often outside `θ_u`, switching after a time gap | fast GRU_p over real-time clicks (eq. 3) |
//! | hidden dislikes | items of 2 topics per user shown (popular/explore slots) but almost never clicked | negative memory GRU_n over exposures (eq. 3), `r̂2` → `r_n` (eq. 5) |
//! | temporary aversion (opt-in) | a top topic clicked for long stretches, then shown and ignored for 15–40 clicks, again and again | negative memory GRU_n (F2S): the clicks say "liked", the recent exposures "not now" |
//! | fading interest (opt-in) | a top topic clicked early in the history, then shown and never clicked | negative memory GRU_n (F2S): the clicks alone still say "liked" |
//! | fatigue | an item shown again and again without a click is ever less likely to be clicked | negative memory GRU_n |
//! | popularity (Zipf) | shows and clicks skewed to head items | every model (item embeddings); the popularity baseline beats random |
//!
//! # Sizes and time
//!
//! Each user draws an activity level, a click count uniform in 60–120, and is simulated until
//! they reach it. With 4-item slates and ~0.9 clicks per step this gives ~3.3 exposures per
//! click: the default (1,000 users × 1,000 items) is ≈ 90k clicks + 294k exposures. The explore
//! slot shows every item tens of times, so every item passes the 20-interaction filter. On it a
//! popularity ranking beats random (HR@10 0.10) and the planted [`World::preference`] beats
//! popularity by more than 0.1 (last click against 99 never-seen items, the test
//! `popularity_and_planted_preference_beat_random`). Under the eval protocol (last 5 clicks,
//! 3 sampler seeds) a near-oracle, the planted preference plus the session bonus for the
//! previous click's topic, reaches HR@10 0.861 and HR@1 0.479 (0.574 and 0.227 without the
//! session bonus): most test clicks are decided by the session topic, and this is about the
//! ceiling a learned model can reach on the default (the test
//! `the_near_oracle_shows_the_session_signal_and_the_ceiling`).
//! The hidden dislikes are a weak signal under that protocol: the near-oracle that does not
//! know them loses only HR@10 0.0096 without the session term (0.574 → 0.565) and 0.0017 with
//! it, because they fall on topics the user's taste already leaves near 0 and the negatives
//! exclude every item the user was shown.
//! A fading interest is the opposite: with `fading_topics = 1` the near-oracle that does not
//! know the fade (scores the faded topic by its taste, as the clicks say) loses HR@10 0.111
//! without the session term (0.543 → 0.432) and 0.032 with it (0.886 → 0.854), the test
//! `a_fading_interest_or_an_aversion_is_what_the_clicks_alone_get_wrong`. Temporary
//! aversions at `aversion_rate = 1` cost that blind near-oracle HR@10 0.100 without the session
//! term (0.511 → 0.411, HR@1 0.179 → 0.105) and 0.019 with it (0.849 → 0.831), where it knows
//! the aversion still on at the end of the history. The default keeps both off.
//! Timestamps are seconds: each user starts within 14 days after `start_ts` (2024-01-01 UTC),
//! slates of a session are 20–120 s apart, a click comes 2–20 s after its slate (so the
//! exposures of a slate precede its click), and users are interleaved in time: the log is
//! sorted by `(ts, user)`, per-user order kept. User `n` is raw id `u{n}` and dense index `n`,
//! item `n` is `i{n}` and `n` (all ids are interned up front, in order).

mod policy;
mod spill;
mod world;

#[cfg(test)]
mod tests;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::{Event, EventKind, EventLog};

pub use policy::LoggingPolicy;
pub use world::{Browse, Dynamics, Response, UserState, World, DAY_SECS};

/// A user is simulated for at most this many steps per target click (a guard, never reached
/// with sane click-model weights).
const MAX_STEPS_PER_CLICK: usize = 50;

/// The size, seed and planted-signal strengths of a synthetic data set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SynthConfig {
    /// Number of users (raw ids `u0…`).
    pub users: usize,
    /// Number of items (raw ids `i0…`).
    pub items: usize,
    /// Number of item topics.
    pub topics: usize,
    /// Seed of every random draw.
    pub seed: u64,
    /// Dirichlet concentration α of the long-term tastes; small means sparse.
    pub taste_concentration: f64,
    /// Hidden disliked topics per user, drawn outside the user's top three taste topics.
    pub disliked_topics: usize,
    /// Fading interests per user (0 by default): the user's top `fading_topics` taste topics
    /// become disliked 15–30 clicks (drawn per user) before the end of their logged history,
    /// so inside the slow-training phase and DIN's 50-click window. Before it they are clicked
    /// as the taste says; after it they are penalised as disliked and get no more sessions, so
    /// the click history says "liked" while the recent exposures say "ignored": the negative
    /// impression the paper's negative memory is for (paper §4.2, eq. 5–6).
    pub fading_topics: usize,
    /// Probability that a user without a temporary aversion starts one at a session break:
    /// one of their top three taste topics counts as disliked for the next 15–40 clicks (no
    /// sessions on it, the dislike penalty), while the logging policy keeps showing it from the
    /// click history. The clicks still say "liked"; the recent exposures say "ignored now".
    pub aversion_rate: f64,
    /// Zipf exponent `s` of item popularity, weight `(rank + 1)^-s`.
    pub zipf_exponent: f64,
    /// Items the logging policy shows per step.
    pub slate_size: usize,
    /// Slots of each slate the logging policy fills from the session topic (2 by default,
    /// `slowfast synth --context-slots N`). With 2 or more, a step shows at least one
    /// session-topic item the user leaves unclicked, so the exposures, and the negative memory
    /// folded from them, say what the user is browsing now; with 1 they say little.
    pub context_slots: usize,
    /// Each user is simulated until a click count drawn uniformly in
    /// `min_clicks_per_user..=max_clicks_per_user`.
    pub min_clicks_per_user: usize,
    /// See `min_clicks_per_user`.
    pub max_clicks_per_user: usize,
    /// Session length in steps, drawn uniformly in `session_min_steps..=session_max_steps`.
    pub session_min_steps: usize,
    /// See `session_min_steps`.
    pub session_max_steps: usize,
    /// Probability that a session topic is drawn from the long-term taste (else uniformly
    /// among the non-disliked topics).
    pub session_in_taste: f64,
    /// Users start within 14 days after this time (seconds since the Unix epoch).
    pub start_ts: i64,
    /// The utility weights of the click model.
    pub click: ClickModel,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            users: 1000,
            items: 1000,
            topics: 16,
            seed: 42,
            taste_concentration: 0.1,
            disliked_topics: 2,
            fading_topics: 0,
            aversion_rate: 0.0,
            zipf_exponent: 1.3,
            slate_size: 4,
            context_slots: 2,
            min_clicks_per_user: 60,
            max_clicks_per_user: 120,
            session_min_steps: 8,
            session_max_steps: 24,
            session_in_taste: 0.5,
            start_ts: 1_704_067_200, // 2024-01-01T00:00:00Z
            click: ClickModel::default(),
        }
    }
}

/// The utility weights of the user's click model (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClickModel {
    /// Weight of the long-term taste `θ_u[t_i]` (top topic = 1).
    pub taste: f32,
    /// Bonus of items of the current session topic.
    pub session: f32,
    /// Weight of the normalised log-popularity `pop_i ∈ [0, 1]`.
    pub popularity: f32,
    /// Penalty of items of a disliked topic.
    pub dislike: f32,
    /// Penalty per earlier unclicked show of the same item to the same user.
    pub fatigue: f32,
    /// Unclicked shows beyond this many add no more fatigue.
    pub fatigue_cap: u32,
    /// Utility of clicking nothing.
    pub no_click: f32,
}

impl Default for ClickModel {
    fn default() -> Self {
        ClickModel {
            taste: 3.0,
            session: 3.0,
            popularity: 2.5,
            dislike: 6.0,
            fatigue: 0.8,
            fatigue_cap: 4,
            no_click: 1.5,
        }
    }
}

impl SynthConfig {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(DataError::InvalidArgument(format!("synth: {msg}")));
        let max_ids = u32::MAX as usize;
        if self.users == 0 || self.users > max_ids {
            return bad(format!(
                "users must be in 1..={max_ids}, got {}",
                self.users
            ));
        }
        if self.items == 0 || self.items > max_ids {
            return bad(format!(
                "items must be in 1..={max_ids}, got {}",
                self.items
            ));
        }
        if self.topics == 0 || self.topics > self.items {
            return bad(format!(
                "topics must be in 1..=items ({}), got {}",
                self.items, self.topics
            ));
        }
        if self.disliked_topics >= self.topics {
            return bad(format!(
                "disliked_topics ({}) must be below topics ({})",
                self.disliked_topics, self.topics
            ));
        }
        if self.fading_topics > world::PROTECTED_TOPICS
            || self.fading_topics + self.disliked_topics >= self.topics
        {
            return bad(format!(
                "fading_topics ({}) must be at most {} and leave a topic neither disliked nor \
                 fading (disliked_topics {}, topics {})",
                self.fading_topics,
                world::PROTECTED_TOPICS,
                self.disliked_topics,
                self.topics
            ));
        }
        if !(0.0..=1.0).contains(&self.aversion_rate) {
            return bad(format!(
                "aversion_rate must be in [0, 1], got {}",
                self.aversion_rate
            ));
        }
        if !(self.taste_concentration.is_finite() && self.taste_concentration > 0.0) {
            return bad(format!(
                "taste_concentration must be > 0, got {}",
                self.taste_concentration
            ));
        }
        if !(self.zipf_exponent.is_finite() && self.zipf_exponent >= 0.0) {
            return bad(format!(
                "zipf_exponent must be >= 0, got {}",
                self.zipf_exponent
            ));
        }
        if self.slate_size == 0 {
            return bad("slate_size must be >= 1".into());
        }
        if self.context_slots == 0 || self.context_slots > self.slate_size {
            return bad(format!(
                "context_slots must be in 1..=slate_size ({}), got {}",
                self.slate_size, self.context_slots
            ));
        }
        if self.min_clicks_per_user == 0 || self.min_clicks_per_user > self.max_clicks_per_user {
            return bad(format!(
                "clicks per user must satisfy 1 <= min ({}) <= max ({})",
                self.min_clicks_per_user, self.max_clicks_per_user
            ));
        }
        if self.max_clicks_per_user.saturating_add(self.slate_size) > self.items {
            return bad(format!(
                "max_clicks_per_user + slate_size ({} + {}) must not exceed items ({}): clicked items are never shown again",
                self.max_clicks_per_user, self.slate_size, self.items
            ));
        }
        if self.session_min_steps == 0 || self.session_min_steps > self.session_max_steps {
            return bad(format!(
                "session steps must satisfy 1 <= min ({}) <= max ({})",
                self.session_min_steps, self.session_max_steps
            ));
        }
        if !(0.0..=1.0).contains(&self.session_in_taste) {
            return bad(format!(
                "session_in_taste must be in [0, 1], got {}",
                self.session_in_taste
            ));
        }
        let c = &self.click;
        for (name, w) in [
            ("click.taste", c.taste),
            ("click.session", c.session),
            ("click.popularity", c.popularity),
            ("click.dislike", c.dislike),
            ("click.fatigue", c.fatigue),
        ] {
            if !(w.is_finite() && w >= 0.0) {
                return bad(format!("{name} must be finite and >= 0, got {w}"));
            }
        }
        if !c.no_click.is_finite() {
            return bad(format!("click.no_click must be finite, got {}", c.no_click));
        }
        Ok(())
    }
}

/// Builds the world of `cfg` and simulates every user's history under the built-in logging
/// policy (see the module documentation).
pub fn generate(cfg: &SynthConfig) -> Result<EventLog> {
    generate_with_world(cfg).map(|(_, log)| log)
}

/// [`generate`], also returning the world (for evaluation against planted preferences and
/// for simulating the same users online).
pub fn generate_with_world(cfg: &SynthConfig) -> Result<(World, EventLog)> {
    let world = World::new(cfg)?;
    let policy = LoggingPolicy::new(&world)?;
    let mut events = Vec::new();
    for user in 0..world.num_users() as u32 {
        simulate_user(&world, &policy, user, &mut events);
    }
    // Interleave users in time; the sort is stable, so each user's order is kept.
    events.sort_by_key(|e| (e.ts, e.user));
    let mut log = EventLog::default();
    for u in 0..world.num_users() {
        log.users.intern(&format!("u{u}"));
    }
    for i in 0..world.num_items() {
        log.items.intern(&format!("i{i}"));
    }
    log.events = events;
    Ok((world, log))
}

/// [`generate`]'s log handed to `push` event by event, in the same order, holding the events
/// of at most `block_users` users at a time: each block of users is simulated, sorted and
/// spilled to a temporary directory (17 bytes an event; `TMPDIR` chooses where), and the
/// blocks are merged by time, then user. No two blocks share a user, so the merge gives exactly
/// [`generate`]'s one stable sort. The users and items are the world's, `u0…` and `i0…`.
pub fn generate_streaming(
    cfg: &SynthConfig,
    block_users: usize,
    mut push: impl FnMut(&Event) -> Result<()>,
) -> Result<()> {
    let world = World::new(cfg)?;
    let policy = LoggingPolicy::new(&world)?;
    let users = world.num_users() as u32;
    let block = u32::try_from(block_users.max(1)).unwrap_or(u32::MAX);
    let mut events = Vec::new();
    let mut spill = None;
    for start in (0..users).step_by(block as usize) {
        events.clear();
        for user in start..start.saturating_add(block).min(users) {
            simulate_user(&world, &policy, user, &mut events);
        }
        events.sort_by_key(|e| (e.ts, e.user));
        if block >= users {
            return events.iter().try_for_each(&mut push);
        }
        spill
            .get_or_insert(spill::Spill::new()?)
            .write_run(&events)?;
    }
    drop(events);
    match spill {
        Some(spill) => spill.merge(push),
        None => Ok(()),
    }
}

/// The state of `user` at the end of the history [`generate`] writes for them: where an
/// online simulation of the same user continues (session, fatigue, clicked items, clock).
pub fn state_after_history(world: &World, user: u32) -> Result<UserState> {
    if user as usize >= world.num_users() {
        return Err(DataError::InvalidArgument(format!(
            "user {user} is not in a world of {} users",
            world.num_users()
        )));
    }
    let policy = LoggingPolicy::new(world)?;
    Ok(simulate_user(world, &policy, user, &mut Vec::new()))
}

/// Appends one user's history: slates until the user's target click count is reached.
/// Returns the user's state after it.
fn simulate_user(
    world: &World,
    policy: &LoggingPolicy<'_>,
    user: u32,
    out: &mut Vec<Event>,
) -> UserState {
    let cfg = world.config();
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    rng.set_stream(u64::from(user) + 1); // stream 0 builds the world
    let target = rng.random_range(cfg.min_clicks_per_user..=cfg.max_clicks_per_user);
    let fade_onset = target.saturating_sub(world.fade_lead(user));
    let mut state = world.user_state(user, fade_onset, &mut rng);
    let mut history = Vec::with_capacity(target);
    for _ in 0..target * MAX_STEPS_PER_CLICK {
        if history.len() >= target {
            break;
        }
        let slate = policy.slate(&state, &history, &mut rng);
        let response = world.step(&mut state, user, &slate, &mut rng);
        for (j, &item) in slate.iter().enumerate() {
            if response.clicked != Some(j) {
                out.push(Event {
                    user,
                    item,
                    ts: response.shown_at,
                    kind: EventKind::Exposure,
                });
            }
        }
        if let (Some(j), Some(ts)) = (response.clicked, response.clicked_at) {
            out.push(Event {
                user,
                item: slate[j],
                ts,
                kind: EventKind::Click,
            });
            history.push(slate[j]);
        }
    }
    state
}
