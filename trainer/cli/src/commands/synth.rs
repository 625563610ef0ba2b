//! `slowfast synth`: a synthetic event log.

use std::path::{Path, PathBuf};

use clap::Args;
use slowfast_data::synth::{self, SynthConfig};

use crate::error::Result;

#[derive(Args)]
pub struct SynthArgs {
    #[arg(long, default_value_t = SynthConfig::default().users)]
    users: usize,
    #[arg(long, default_value_t = SynthConfig::default().items)]
    items: usize,
    #[arg(long, default_value_t = SynthConfig::default().seed)]
    seed: u64,
    /// Each user's top N taste topics fade: disliked from 15–30 clicks before the end of the
    /// user's history (a negative impression only the exposures show; at most 3).
    #[arg(long, default_value_t = SynthConfig::default().fading_topics)]
    fading_topics: usize,
    /// Probability per session break that a user starts a temporary aversion: one of their top
    /// three taste topics is ignored for the next 15–40 clicks (in [0, 1]).
    #[arg(long, default_value_t = SynthConfig::default().aversion_rate)]
    aversion_rate: f64,
    /// Items the logging policy shows per step (the user clicks at most one).
    #[arg(long, default_value_t = SynthConfig::default().slate_size)]
    slate_size: usize,
    /// Slots of each slate the logging policy fills from the session topic (1 to the slate
    /// size): with 2 or more the exposures show what the user is browsing now.
    #[arg(long, default_value_t = SynthConfig::default().context_slots)]
    context_slots: usize,
    /// The file to write: Parquet for `*.parquet`, else CSV (gzip-compressed for `*.gz`).
    #[arg(long)]
    out: PathBuf,
}

pub fn run(a: &SynthArgs) -> Result<()> {
    let cfg = SynthConfig {
        users: a.users,
        items: a.items,
        seed: a.seed,
        fading_topics: a.fading_topics,
        aversion_rate: a.aversion_rate,
        slate_size: a.slate_size,
        context_slots: a.context_slots,
        ..SynthConfig::default()
    };
    write_synth(&cfg, &a.out)
}

fn write_synth(cfg: &SynthConfig, out: &Path) -> Result<()> {
    let log = synth::generate(cfg)?;
    println!("{} (seed {})", super::data::write_log(&log, out)?, cfg.seed);
    Ok(())
}
