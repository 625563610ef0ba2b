//! The event log a command reads: one argument group, one loader.

use std::path::{Path, PathBuf};

use clap::Args;
use slowfast_data::synth::{self, SynthConfig};
use slowfast_data::{display_name, Dataset, EventLog, Format, ReadOptions};

use crate::error::Result;

#[derive(Args)]
pub struct Input {
    /// The event log: CSV (`user,item,timestamp,kind`, `.gz` accepted), the same columns as
    /// Parquet, ML-1M `ratings.dat` or Steam reviews.
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

    /// The log as read, before the filter and the split.
    pub fn read_log(&self) -> Result<EventLog> {
        read_log(&self.data, self.format, self.lenient)
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

/// Reads, filters and splits `path` in `format` (guessed from the name when `None`); `lenient`
/// skips and counts malformed records instead of stopping at the first.
fn read(path: &Path, format: Option<Format>, lenient: bool) -> Result<Dataset> {
    let format = format.unwrap_or_else(|| Format::guess(path));
    let log = read_log(path, Some(format), lenient)?;
    Ok(Dataset::from_log(display_name(path, format), log)?)
}

/// Reads `path` as [`read`] does, without the filter and the split.
fn read_log(path: &Path, format: Option<Format>, lenient: bool) -> Result<EventLog> {
    let format = format.unwrap_or_else(|| Format::guess(path));
    let log = slowfast_data::read(path, format, ReadOptions { lenient })?;
    if log.skipped > 0 {
        tracing::warn!(
            skipped = log.skipped,
            "malformed records skipped (--lenient)"
        );
    }
    Ok(log)
}
