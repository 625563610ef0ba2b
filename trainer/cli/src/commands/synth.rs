//! `slowfast synth`: a synthetic event log, streamed to its file.

use std::path::{Path, PathBuf};

use std::fmt::Write as _;

use clap::Args;
use slowfast_data::synth::{self, SynthConfig};
use slowfast_data::{EventKind, EventWriter};

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

/// Users simulated (and their events held) at a time: about 90 MB of events with the default
/// click counts.
const BLOCK_USERS: usize = 10_000;

/// Streams the synthetic log into `out` (its folder created), a block of users at a time.
fn write_synth(cfg: &SynthConfig, out: &Path) -> Result<()> {
    super::data::create_parent(out)?;
    let mut writer = EventWriter::create(out)?;
    let (mut clicks, mut exposures) = (0, 0);
    let (mut user, mut item) = (String::new(), String::new());
    synth::generate_streaming(cfg, BLOCK_USERS, |e| {
        match e.kind {
            EventKind::Click => clicks += 1,
            EventKind::Exposure => exposures += 1,
        }
        user.clear();
        item.clear();
        write!(user, "u{}", e.user).expect("writing to a String cannot fail");
        write!(item, "i{}", e.item).expect("writing to a String cannot fail");
        writer.push(&user, &item, e.ts, e.kind)
    })?;
    writer.finish()?;
    let line = super::data::wrote(out, cfg.users, cfg.items, clicks, exposures);
    println!("{line} (seed {})", cfg.seed);
    Ok(())
}
