//! The event log a command reads: one argument group, one loader.

use std::path::{Path, PathBuf};

use clap::Args;
use slowfast_data::synth::{self, SynthConfig};
use slowfast_data::{Dataset, Format, ReadOptions};

use crate::error::Result;

#[derive(Args)]
pub struct Input {
    /// The event log: CSV (`user,item,timestamp,kind`), ML-1M `ratings.dat` or Steam reviews.
    #[arg(long)]
    pub(crate) data: PathBuf,
    /// The file format; guessed from the name when left out.
    #[arg(long, value_enum)]
    pub(crate) format: Option<Format>,
    /// Skip and count malformed records instead of stopping at the first.
    #[arg(long)]
    pub(crate) lenient: bool,
}

impl Input {
    pub fn load(&self) -> Result<Dataset> {
        read(&self.data, self.format, self.lenient)
    }
}

/// The event log of a command that trains on the synthetic default data set when none is
/// given (`train`, `bench trainer`).
#[derive(Args)]
pub struct OrSynthetic {
    /// The event log to train on; the synthetic default data set when left out.
    #[arg(long)]
    pub(crate) data: Option<PathBuf>,
    /// The file format; guessed from the name when left out.
    #[arg(long, value_enum)]
    pub(crate) format: Option<Format>,
}

impl OrSynthetic {
    pub fn load(&self) -> Result<Dataset> {
        match &self.data {
            Some(path) => read(path, self.format, false),
            None => Ok(Dataset::from_log(
                "synthetic",
                synth::generate(&SynthConfig::default())?,
            )?),
        }
    }
}

/// Reads `path` in `format` (guessed from the name when `None`); `lenient` skips and counts
/// malformed records instead of stopping at the first.
fn read(path: &Path, format: Option<Format>, lenient: bool) -> Result<Dataset> {
    let format = format.unwrap_or_else(|| Format::guess(path));
    let data = Dataset::load(path, format, ReadOptions { lenient })?;
    if data.log.skipped > 0 {
        tracing::warn!(
            skipped = data.log.skipped,
            "malformed records skipped (--lenient)"
        );
    }
    Ok(data)
}
