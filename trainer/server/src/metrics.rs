//! `GET /metrics`: what an operator scrapes, in the Prometheus text format (prometheus-client).
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `slowfast_http_requests_total` | counter | `method`, `route` (the route's template, `unmatched` for unknown paths), `status` |
//! | `slowfast_http_request_duration_seconds` | histogram | same |
//! | `slowfast_rate_limited_total` | counter | — |
//! | `slowfast_open_connections` | gauge | — |
//! | `slowfast_upload_queue_depth` | gauge | uploads waiting for the writer ([`super::store::writer`]) |
//! | `slowfast_upload_group_uploads`, `slowfast_upload_group_events` | histogram | uploads and events per committed group |
//! | `slowfast_feed_pool_size` | histogram | candidates retrieved per feed before ranking |
//! | `slowfast_model_info` | gauge (1) | `model_version` |
//! | `slowfast_model_items` | gauge | items in the served bundle |
//!
//! Labels come from route templates and status codes only, never from paths, users or keys,
//! so a client cannot grow the series without bound.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::store::writer::GroupSizes;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    model_version: String,
}

/// 0.25 ms to about 8 s, doubling.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// The server's metrics. Counters and histograms are updated where things happen; gauges of
/// state (queue depth, model) are read when scraped.
pub struct Metrics {
    registry: Registry,
    requests: Family<RouteLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub rate_limited: Counter,
    pub open_connections: Gauge,
    queue_depth: Gauge,
    pool_size: Histogram,
    model: Family<ModelLabels, Gauge>,
    items: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Registers every metric; `groups` are the writer's group-size histograms.
    pub fn new(groups: &GroupSizes) -> Metrics {
        let mut registry = Registry::with_prefix("slowfast");
        let requests = Family::<RouteLabels, Counter>::default();
        let latency = Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        let rate_limited = Counter::default();
        let open_connections = Gauge::default();
        let queue_depth = Gauge::default();
        let pool_size = Histogram::new(exponential_buckets(8.0, 2.0, 10));
        let model = Family::<ModelLabels, Gauge>::default();
        let items = Gauge::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route template and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from a request's headers to its answer, by method, route template and status",
            latency.clone(),
        );
        registry.register(
            "rate_limited",
            "Requests refused with 429 by the per-token rate limit",
            rate_limited.clone(),
        );
        registry.register(
            "open_connections",
            "Client connections open now",
            open_connections.clone(),
        );
        registry.register(
            "upload_queue_depth",
            "Uploads waiting for the writer task",
            queue_depth.clone(),
        );
        registry.register(
            "upload_group_uploads",
            "Uploads per group commit",
            groups.uploads.clone(),
        );
        registry.register(
            "upload_group_events",
            "Events per group commit",
            groups.events.clone(),
        );
        registry.register(
            "feed_pool_size",
            "Candidates retrieved per feed before the slow model ranks them",
            pool_size.clone(),
        );
        registry.register(
            "model_info",
            "The served bundle's model version (value 1)",
            model.clone(),
        );
        registry.register("model_items", "Items in the served bundle", items.clone());
        Metrics {
            registry,
            requests,
            latency,
            rate_limited,
            open_connections,
            queue_depth,
            pool_size,
            model,
            items,
        }
    }

    /// Records the size of one feed's candidate pool.
    pub fn feed_pool(&self, size: usize) {
        self.pool_size.observe(size as f64);
    }

    /// Counts and times one request by its method, route template and status.
    pub fn request(&self, method: String, route: String, status: u16, seconds: f64) {
        let labels = RouteLabels {
            method,
            route,
            status,
        };
        self.latency.get_or_create(&labels).observe(seconds);
        self.requests.get_or_create(&labels).inc();
    }

    /// The text exposition, with the state gauges set to what the server holds now: the
    /// uploads `queued` for the writer, the served `model_version` and its `items`.
    pub fn render(
        &self,
        queued: usize,
        model_version: &str,
        items: usize,
    ) -> Result<String, std::fmt::Error> {
        self.queue_depth.set(queued as i64);
        self.model.clear();
        self.model
            .get_or_create(&ModelLabels {
                model_version: model_version.to_owned(),
            })
            .set(1);
        self.items.set(items as i64);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}
