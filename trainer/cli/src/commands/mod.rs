//! The subcommands of `slowfast`, one file each.

mod bench;
mod data;
mod demo;
mod eval;
mod export;
mod serve;
mod synth;
mod train;

use clap::Subcommand;

use crate::error::Result;

#[derive(Subcommand)]
pub enum Command {
    /// Write a synthetic event log (CSV; gzip when the name ends in .gz).
    Synth(synth::SynthArgs),
    /// Inspect a data set.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Evaluate models with the paper's protocol; writes results.json, results.md, results.svg.
    Eval(eval::EvalArgs),
    /// The slow-fast loop online on the synthetic default: train → export → serve → simulated
    /// phones → nightly retraining; CTR@10 and NDCG@10 per day for four arms.
    Demo(demo::DemoArgs),
    /// The sync server: uploads, feeds ranked by the slow model, model files (see `serve` docs).
    Serve(serve::ServeArgs),
    /// Mint a bearer token for one user, signed with the server's secret.
    Token(serve::TokenArgs),
    /// Train MC²-SF (Algorithm 1) and write a resumable checkpoint.
    Train(train::TrainArgs),
    /// Export a checkpoint (or seeded random weights) as a model bundle.
    Export(export::ExportArgs),
    /// Check model bundles.
    #[command(subcommand)]
    Bundle(export::BundleCommand),
    /// Benchmarks: one JSON object of figures per target.
    Bench(bench::BenchArgs),
}

impl Command {
    /// Whether the command serves for long (it gives freed memory back to the system).
    pub fn serves(&self) -> bool {
        matches!(self, Command::Serve(_))
    }

    /// The log level when `RUST_LOG` is unset: the demo's 800 phones would log every model
    /// install, so it shows progress bars instead.
    pub fn default_log(&self) -> &'static str {
        if matches!(self, Command::Demo(_)) {
            "warn"
        } else {
            "info"
        }
    }

    pub fn run(&self) -> Result<()> {
        match self {
            Command::Synth(a) => synth::run(a),
            Command::Data(c) => c.run(),
            Command::Eval(a) => eval::run(a),
            Command::Demo(a) => demo::run(a),
            Command::Serve(a) => serve::run(a),
            Command::Token(a) => serve::token(a),
            Command::Train(a) => train::run(a),
            Command::Export(a) => export::run(a),
            Command::Bundle(c) => export::verify(c),
            Command::Bench(a) => bench::run(a),
        }
    }
}
