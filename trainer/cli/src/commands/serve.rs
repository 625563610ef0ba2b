//! `slowfast serve` and `slowfast token`: the sync server, and the tokens it accepts.

use std::path::PathBuf;

use clap::Args;
use slowfast_feed::retrieval::Retrieval;
use slowfast_server::auth::{unix_now, Secret};
use slowfast_server::ratelimit::RateLimit;
use slowfast_server::Connections;

use crate::error::{CliError, Result};

/// Where the server's signing secret comes from: `--secret`, else `SLOWFAST_SECRET`, else
/// `--secret-file`.
#[derive(Args)]
struct SecretArgs {
    #[arg(long)]
    secret: Option<String>,
    #[arg(long)]
    secret_file: Option<PathBuf>,
}

impl SecretArgs {
    fn resolve(&self) -> Result<Secret> {
        Ok(Secret::resolve(
            self.secret.as_deref(),
            self.secret_file.as_deref(),
        )?)
    }
}

#[derive(Args)]
pub struct ServeArgs {
    /// The model bundle directory.
    #[arg(long)]
    bundle: PathBuf,
    /// A SQLite file (created on first start) or a `postgres://` URL.
    #[arg(long, default_value = "slowfast.db")]
    db: String,
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// Candidates retrieved per feed before ranking.
    #[arg(long, default_value_t = Retrieval::default().pool)]
    pool: usize,
    /// The feed's seen filter: items among the user's latest N uploaded exposures (shown and
    /// not clicked) are not served; 0 turns it off.
    #[arg(long, value_name = "N", default_value_t = Retrieval::default().seen)]
    seen: usize,
    /// Seconds a client may take to send a request's headers, and a kept-alive connection
    /// may wait idle for its next request, before it is closed.
    #[arg(long, default_value_t = Connections::default().header_timeout.as_secs_f64())]
    header_timeout: f64,
    /// Seconds a request body may pause between two reads before the request is refused
    /// and its connection closed.
    #[arg(long, default_value_t = Connections::default().body_timeout.as_secs_f64())]
    body_timeout: f64,
    /// Connections open at once; further clients wait in the listen backlog. Keep it below
    /// the process's open-file limit (`ulimit -n`).
    #[arg(long, default_value_t = Connections::default().max)]
    max_connections: usize,
    /// Requests per second each token's user may make on average (fractions allowed); past
    /// it a request gets 429 with Retry-After. No limit when absent.
    #[arg(long, value_name = "PER_SECOND")]
    rate_limit: Option<f64>,
    /// Requests a user may make at once before --rate-limit applies (default: one second's
    /// worth, at least 1).
    #[arg(long, requires = "rate_limit")]
    rate_burst: Option<u32>,
    #[command(flatten)]
    secret: SecretArgs,
}

#[derive(Args)]
pub struct TokenArgs {
    #[arg(long)]
    user: String,
    /// Seconds the token stays valid.
    #[arg(long, default_value_t = 30 * 24 * 3600)]
    ttl: i64,
    #[command(flatten)]
    secret: SecretArgs,
}

pub fn run(a: &ServeArgs) -> Result<()> {
    let config = slowfast_server::ServeConfig {
        bundle: a.bundle.clone(),
        db: a.db.clone(),
        listen: a.listen,
        secret: a.secret.resolve()?,
        retrieval: Retrieval {
            pool: a.pool,
            seen: a.seen,
        },
        connections: Connections {
            header_timeout: seconds("--header-timeout", a.header_timeout)?,
            body_timeout: seconds("--body-timeout", a.body_timeout)?,
            max: a.max_connections,
        },
        rate_limit: a.rate_limit.map(|per_second| RateLimit {
            per_second,
            burst: a
                .rate_burst
                .unwrap_or_else(|| (per_second.ceil() as u32).max(1)),
        }),
    };
    Ok(slowfast_server::run(config)?)
}

/// A positive, finite number of seconds given for `flag`.
fn seconds(flag: &str, s: f64) -> Result<std::time::Duration> {
    std::time::Duration::try_from_secs_f64(s)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            CliError::InvalidArgument(format!("{flag} must be a positive number of seconds"))
        })
}

pub fn token(a: &TokenArgs) -> Result<()> {
    if a.ttl <= 0 {
        return Err(CliError::InvalidArgument("--ttl must be positive".into()));
    }
    let expiry = unix_now().saturating_add(a.ttl);
    println!("{}", a.secret.resolve()?.mint(&a.user, expiry)?);
    Ok(())
}
