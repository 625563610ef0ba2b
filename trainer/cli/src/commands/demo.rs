//! `slowfast demo`: the online loop, simulated.

use std::path::PathBuf;

use clap::Args;
use slowfast_data::synth::SynthConfig;
use slowfast_feed::retrieval::Retrieval;
use slowfast_online::demo::{self, DemoConfig};
use slowfast_trainer::arms::Arm;
use slowfast_trainer::models::train::{TrainConfig, Validation};

use crate::error::Result;

/// `slowfast demo` (see `slowfast_online::demo`); the defaults finish in minutes on 2 cores.
#[derive(Args)]
pub struct DemoArgs {
    /// Where the demo writes checkpoints, bundles, server databases and reports.
    #[arg(long, default_value = "out/demo")]
    out: PathBuf,
    /// Simulated phones per arm (world users 0..N).
    #[arg(long, default_value_t = DemoConfig::default().devices)]
    devices: usize,
    /// Simulated days; the server retrains after each day but the last.
    #[arg(long, default_value_t = DemoConfig::default().days)]
    days: usize,
    /// App visits per phone and day (each shows the top 10 of a feed).
    #[arg(long, default_value_t = DemoConfig::default().visits_per_day)]
    visits: usize,
    /// Candidates per feed that the device re-ranks.
    #[arg(long, default_value_t = DemoConfig::default().feed_k)]
    feed: usize,
    /// Users of the synthetic world (its logged history is the initial training data).
    #[arg(long, default_value_t = SynthConfig::default().users)]
    users: usize,
    /// Items of the synthetic world.
    #[arg(long, default_value_t = SynthConfig::default().items)]
    items: usize,
    /// Items the world's logging policy showed per step in the logged history.
    #[arg(long, default_value_t = SynthConfig::default().slate_size)]
    slate_size: usize,
    /// Slots of each logged slate filled from the session topic.
    #[arg(long, default_value_t = SynthConfig::default().context_slots)]
    context_slots: usize,
    /// The most epochs per fit of the initial training.
    #[arg(long, default_value_t = DemoConfig::default().train.max_epochs)]
    epochs: usize,
    /// The most epochs per fit of each nightly next round.
    #[arg(long, default_value_t = DemoConfig::default().retrain.epochs)]
    retrain_epochs: usize,
    /// Adam's learning rate: the paper's 5e-4 needs many more epochs than a demo can spend.
    #[arg(long, default_value_t = DemoConfig::default().train.lr)]
    lr: f64,
    /// Adam's learning rate of each nightly next round.
    #[arg(long, default_value_t = slowfast_online::demo::RETRAIN_LR)]
    retrain_lr: f64,
    /// The first seed: the `k`-th seed (from 0) `seed + k` trains from `seed + k` and draws the
    /// world, its log and the users' random streams from the synthetic seed `42 + k`.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seeds run (`seed`, `seed + 1`, …); the report gives mean ± sd over them and the lift
    /// intervals pool their users.
    #[arg(long, default_value_t = DemoConfig::default().seeds)]
    seeds: usize,
    /// Items arriving in the world per simulated day (servable after the next nightly round).
    #[arg(long, default_value_t = DemoConfig::default().dynamics.arrivals_per_day)]
    item_arrivals: usize,
    /// Seconds (of a user's clock) after a click before the user may click the item again and
    /// the app shows it again; `off`: never.
    #[arg(long, default_value_t = OrOff(DemoConfig::default().dynamics.revisit_secs))]
    revisit: OrOff<i64>,
    /// Half-life in seconds of an item's fatigue (unclicked shows); `off`: fatigue never
    /// wears off.
    #[arg(
        long,
        default_value_t = OrOff(DemoConfig::default().dynamics.fatigue_half_life_secs)
    )]
    fatigue_half_life: OrOff<f64>,
    /// Threads driving the phones.
    #[arg(long, default_value_t = DemoConfig::default().threads)]
    threads: usize,
    /// The arms to run, comma-separated (the lifts need `slow`, the control).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "slow,fast,vanilla,mc2sf"
    )]
    arms: Vec<Arm>,
    /// Impression negatives per click for the device model's fits, initial and nightly: the
    /// items shown with the clicked one and not clicked.
    #[arg(long, default_value_t = DemoConfig::default().train.impressions)]
    impressions: usize,
    /// What the device model's fits validate on, initial and nightly (`slowfast train
    /// --validation`).
    #[arg(long, value_enum, default_value_t = DemoConfig::default().train.validation)]
    validation: Validation,
    /// The servers' seen filter (`slowfast serve --seen`): items among a user's latest N
    /// uploaded exposures are not served; 0 turns it off.
    #[arg(long, value_name = "N", default_value_t = DemoConfig::default().retrieval.seen)]
    seen: usize,
}

impl DemoArgs {
    fn config(&self) -> DemoConfig {
        let d = DemoConfig::default();
        DemoConfig {
            out: self.out.clone(),
            synth: SynthConfig {
                users: self.users,
                items: self.items,
                slate_size: self.slate_size,
                context_slots: self.context_slots,
                ..d.synth
            },
            dynamics: slowfast_data::synth::Dynamics {
                arrivals_per_day: self.item_arrivals,
                revisit_secs: self.revisit.0,
                fatigue_half_life_secs: self.fatigue_half_life.0,
            },
            seeds: self.seeds,
            devices: self.devices,
            days: self.days,
            visits_per_day: self.visits,
            feed_k: self.feed,
            train: TrainConfig {
                max_epochs: self.epochs,
                lr: self.lr,
                seed: self.seed,
                impressions: self.impressions,
                validation: self.validation,
                ..d.train
            },
            retrain: slowfast_online::retrain::NextRound {
                epochs: self.retrain_epochs,
                lr: Some(self.retrain_lr),
                ..d.retrain
            },
            threads: self.threads,
            arms: self.arms.clone(),
            retrieval: Retrieval {
                seen: self.seen,
                ..d.retrieval
            },
            ..d
        }
    }
}

/// A number, or `off` for none.
#[derive(Clone, Copy, Debug)]
struct OrOff<T>(Option<T>);

impl<T: std::fmt::Display> std::fmt::Display for OrOff<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(v) => v.fmt(f),
            None => f.write_str("off"),
        }
    }
}

impl<T: std::str::FromStr> std::str::FromStr for OrOff<T>
where
    T::Err: std::fmt::Display,
{
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s == "off" {
            return Ok(OrOff(None));
        }
        s.parse()
            .map(|v| OrOff(Some(v)))
            .map_err(|e| format!("{s:?}: {e} (a number or `off`)"))
    }
}

pub fn run(a: &DemoArgs) -> Result<()> {
    let outcome = demo::run(&a.config())?;
    println!("{}", outcome.online.markdown());
    println!("wrote {}/online.{{json,md,svg}}", a.out.display());
    Ok(())
}
