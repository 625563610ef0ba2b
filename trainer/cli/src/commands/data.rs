//! `slowfast data stats`: what a data set holds before and after the filter, and its split.

use clap::Subcommand;

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
}

impl DataCommand {
    pub fn run(&self) -> Result<()> {
        match self {
            DataCommand::Stats { input, json } => stats(input, *json),
        }
    }
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
