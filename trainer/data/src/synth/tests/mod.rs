//! The generator's contract: determinism, sizes the pipeline needs, and every planted signal
//! visible in the log.

use std::collections::HashMap;
use std::sync::OnceLock;

use rand::seq::index;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::world::SESSION_GAP_MIN_SECS;
use super::*;
use crate::protocol::metrics::{MeanStd, Metric, METRICS};
use crate::protocol::sampler::{sample_cases, NegativePool, NEGATIVES};
use crate::protocol::{evaluate, Query, Scorer, View};
use crate::Dataset;

/// The world and log of `cfg`, generated once into `cell` for all tests.
fn generated_once(
    cell: &'static OnceLock<(World, EventLog)>,
    cfg: impl FnOnce() -> SynthConfig,
) -> &'static (World, EventLog) {
    cell.get_or_init(|| generate_with_world(&cfg()).expect("the config is valid"))
}

/// The default data set.
fn default_log() -> &'static (World, EventLog) {
    static CELL: OnceLock<(World, EventLog)> = OnceLock::new();
    generated_once(&CELL, SynthConfig::default)
}

fn small(seed: u64) -> SynthConfig {
    SynthConfig {
        users: 40,
        items: 300,
        seed,
        ..SynthConfig::default()
    }
}

/// Each user's events in log order.
fn per_user(log: &EventLog) -> Vec<Vec<Event>> {
    let mut users = vec![Vec::new(); log.users.len()];
    for e in &log.events {
        users[e.user as usize].push(*e);
    }
    users
}

fn clicks(events: &[Event]) -> Vec<u32> {
    events
        .iter()
        .filter(|e| e.kind == EventKind::Click)
        .map(|e| e.item)
        .collect()
}

/// `(clicks, shows)` of every show for which `pick(user, item, earlier unclicked shows)` holds.
fn ctr_where(log: &EventLog, pick: impl Fn(u32, u32, u32) -> bool) -> (u64, u64) {
    let mut unclicked: HashMap<(u32, u32), u32> = HashMap::new();
    let (mut hits, mut shows) = (0, 0);
    for e in &log.events {
        let seen = unclicked.entry((e.user, e.item)).or_insert(0);
        if pick(e.user, e.item, *seen) {
            shows += 1;
            hits += u64::from(e.kind == EventKind::Click);
        }
        if e.kind == EventKind::Exposure {
            *seen += 1;
        }
    }
    (hits, shows)
}

fn rate((hits, shows): (u64, u64)) -> f64 {
    hits as f64 / shows.max(1) as f64
}

/// A world whose users' top taste topic fades ([`SynthConfig::fading_topics`]).
fn fading_log() -> &'static (World, EventLog) {
    static CELL: OnceLock<(World, EventLog)> = OnceLock::new();
    generated_once(&CELL, || SynthConfig {
        fading_topics: 1,
        ..SynthConfig::default()
    })
}

/// A world whose users start a temporary aversion at every session break without one
/// ([`SynthConfig::aversion_rate`] 1).
fn aversion_log() -> &'static (World, EventLog) {
    static CELL: OnceLock<(World, EventLog)> = OnceLock::new();
    generated_once(&CELL, || SynthConfig {
        aversion_rate: 1.0,
        ..SynthConfig::default()
    })
}

mod config;
mod log;
mod oracle;
mod user;
