//! `slowfast data stats`: what a data set holds before and after the filter, and its split;
//! `slowfast data convert`: an event log in another format.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use slowfast_data::FileError;

use crate::error::Result;
use crate::input::Input;

#[derive(Subcommand)]
pub enum DataCommand {
    /// Users, items, clicks, exposures before/after the 20-core filter, and the split sizes.
    Stats {
        #[command(flatten)]
        input: Input,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Writes the event log as read (every record, no filter) as Parquet for `*.parquet`, else
    /// as CSV (gzip-compressed for `*.gz`).
    Convert {
        #[command(flatten)]
        input: Input,
        /// The file to write.
        #[arg(long)]
        out: PathBuf,
    },
}

impl DataCommand {
    pub fn run(&self) -> Result<()> {
        match self {
            DataCommand::Stats { input, json } => stats(input, *json),
            DataCommand::Convert { input, out } => convert(input, out),
        }
    }
}

fn convert(input: &Input, out: &Path) -> Result<()> {
    let log = input.read_log()?;
    create_parent(out)?;
    slowfast_data::write(&log, out)?;
    let (clicks, exposures) = log.counts();
    println!(
        "{}",
        wrote(out, log.users.len(), log.items.len(), clicks, exposures)
    );
    Ok(())
}

/// Creates the folder `out` is written in.
pub(crate) fn create_parent(out: &Path) -> Result<()> {
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| FileError::new(dir, e))?;
    }
    Ok(())
}

/// The line that says what an event log written to `out` holds.
pub(crate) fn wrote(
    out: &Path,
    users: usize,
    items: usize,
    clicks: usize,
    exposures: usize,
) -> String {
    format!(
        "wrote {}: {users} users, {items} items, {clicks} clicks, {exposures} exposures",
        out.display()
    )
}

fn stats(input: &Input, json: bool) -> Result<()> {
    let data = input.load()?;
    let f = &data.filter;
    let s = &data.split.report;
    if json {
        let v = serde_json::json!({
            "dataset": data.name, "skipped": data.log.skipped, "filter": f, "split": s,
        });
        println!("{v:#}");
        return Ok(());
    }
    println!("{} ({})", data.name, input.data.display());
    if data.log.skipped > 0 {
        println!("malformed records skipped: {}", data.log.skipped);
    }
    println!("| | users | items | clicks | exposures |\n|---|---|---|---|---|");
    for (name, c) in [("read", f.before), ("after 20-core filter", f.after)] {
        println!(
            "| {name} | {} | {} | {} | {} |",
            c.users, c.items, c.clicks, c.exposures
        );
    }
    println!(
        "filter: users and items with < {} interactions dropped in {} passes (the last drops nothing)",
        f.min_interactions, f.passes
    );
    println!(
        "split: {} users ({} with < 11 clicks left out)\n| phase | clicks | exposures |\n|---|---|---|",
        s.users, s.users_too_short
    );
    for (name, p) in [
        ("slow training", s.slow),
        ("fast training", s.fast),
        ("test", s.test),
    ] {
        println!("| {name} | {} | {} |", p.clicks, p.exposures);
    }
    Ok(())
}
