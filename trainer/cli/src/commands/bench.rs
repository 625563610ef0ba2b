//! `slowfast bench`: one JSON object of figures per target.

use std::path::PathBuf;

use clap::Args;
use slowfast_data::FileError;
use slowfast_feed::retrieval::Retrieval;
use slowfast_trainer::baselines::ZooConfig;
use slowfast_trainer::bench;

use crate::error::{CliError, Result};
use crate::input::OrSynthetic;

#[derive(Args)]
pub struct BenchArgs {
    #[arg(value_enum)]
    target: BenchTarget,
    /// The event log `trainer` trains on.
    #[command(flatten)]
    input: OrSynthetic,
    /// The model bundle (`device`, `server`); a randomly initialised one of the default shape
    /// (d = 32, windows 50/50) when left out — speed does not depend on the weights' values.
    #[arg(long)]
    bundle: Option<PathBuf>,
    /// Concurrent loopback clients (`server`).
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Seconds per phase (`server`: uploads, then feeds).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Items per feed (`server`).
    #[arg(long, default_value_t = 50)]
    k: usize,
    /// Candidates retrieved and ranked per feed (`server`).
    #[arg(long, default_value_t = Retrieval::default().pool)]
    pool: usize,
    /// Print the figures as one JSON object (else pretty-printed JSON with a heading).
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
enum BenchTarget {
    /// Training samples/s of the slow and fast components, seconds per epoch, peak memory.
    Trainer,
    /// Device runtime: rerank of 100/500, record_exposure, open, memory, bundle size, tract/ort.
    Device,
    /// Sync server: upload and feed throughput, p50/p99 latency under a loopback load.
    Server,
    /// Every target above, side by side in one object.
    All,
}

pub fn run(a: &BenchArgs) -> Result<()> {
    let json = |what: &str, v: std::result::Result<serde_json::Value, serde_json::Error>| {
        v.map_err(slowfast_data::JsonError::of(format!(
            "{what} benchmark figures"
        )))
    };
    let wants = |t: BenchTarget| a.target == t || a.target == BenchTarget::All;
    let mut figures = serde_json::Map::new();
    if wants(BenchTarget::Device) {
        let device = bench::device::run(a.bundle.as_deref(), &device_bench_binary()?)?;
        figures.insert(
            "device".into(),
            json("device", serde_json::to_value(device))?,
        );
    }
    if wants(BenchTarget::Server) {
        let server = bench::device::with_bundle(a.bundle.as_deref(), |bundle| {
            let config = slowfast_server::bench::BenchConfig {
                bundle: bundle.to_path_buf(),
                concurrency: a.concurrency.max(1),
                pool: a.pool,
                k: a.k,
                duration: std::time::Duration::from_secs(a.seconds.max(1)),
            };
            Ok::<_, CliError>(slowfast_server::bench::run(&config)?)
        })?;
        figures.insert(
            "server".into(),
            json("server", serde_json::to_value(server))?,
        );
    }
    if wants(BenchTarget::Trainer) {
        let data = a.input.load()?;
        let d = ZooConfig::default();
        let trainer = bench::trainer::run(&data.name, &data.split, d.model, d.train)?;
        let mut v = json("trainer", serde_json::to_value(trainer))?;
        v["data"] = serde_json::Value::String(data.name.clone());
        figures.insert("trainer".into(), v);
    }
    // One target prints its own object (the keys its issue names); `all` nests them.
    let out = match (a.target, figures.len()) {
        (BenchTarget::All, _) | (_, 0) => serde_json::Value::Object(figures),
        _ => figures
            .into_iter()
            .next()
            .map(|(_, v)| v)
            .unwrap_or_default(),
    };
    if a.json {
        println!("{out}");
    } else {
        println!("bench\n{out:#}");
    }
    Ok(())
}

/// `slowfast-device-bench`, the device benchmark's own binary, built and installed beside
/// `slowfast` (`cargo build --release -p slowfast-cli`).
fn device_bench_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe().map_err(|e| FileError::new("the running executable", e))?;
    let runner = exe.with_file_name(format!(
        "slowfast-device-bench{}",
        std::env::consts::EXE_SUFFIX
    ));
    if runner.is_file() {
        Ok(runner)
    } else {
        Err(FileError::new(
            &runner,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the device benchmark's binary is built beside slowfast by \
                 `cargo build --release -p slowfast-cli`",
            ),
        )
        .into())
    }
}
