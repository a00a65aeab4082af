//! What `/metrics` shows, kept in a `prometheus-client` registry and written in the
//! Prometheus text format (version 0.0.4).
//!
//! Each [`crate::App`] has its own registry, never a process-wide one: tests run several
//! servers in one process and each must count only its own traffic. Counters the server
//! updates as things happen live here; what other parts already count (the ingest pipeline,
//! the event log, the job scheduler) is read at scrape time by collectors.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use kith_core::Code;
use kith_store::pipeline::Pipeline;
use kith_store::{Activity, Outcome, Store};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// The `Content-Type` of [`Metrics::render`]'s text.
pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Upper bounds, in seconds, of the latency histograms: from a cached read (a millisecond) to
/// a slow commit or an export (seconds).
const LATENCY_BUCKETS: [f64; 13] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The `route` of a request no route matched: the raw path would let any client create
/// series without end.
const UNMATCHED: &str = "unmatched";

/// The labels of an HTTP request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    /// The route's template (`/api/contacts/{id}`), or [`UNMATCHED`].
    route: String,
    method: &'static str,
    status: u16,
}

/// The labels of a rejection.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: String,
}

/// The labels of a background pass.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PassLabels {
    pass: &'static str,
    outcome: &'static str,
}

/// The labels of a delivery attempt.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    kind: &'static str,
    outcome: &'static str,
}

/// How a background pass ended.
#[derive(Debug, Clone, Copy)]
pub enum PassOutcome {
    /// It did its work.
    Ok,
    /// It returned an error.
    Failed,
    /// It panicked.
    Panicked,
}

/// What became of one delivery after an attempt.
#[derive(Debug, Clone, Copy)]
pub enum DeliveryOutcome {
    /// The receiver took it.
    Sent,
    /// It will be tried again.
    Retried,
    /// It was given up.
    Failed,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// The server's registry and the metrics it updates itself.
pub struct Metrics {
    registry: Registry,
    stored: Counter,
    pending: Counter,
    interactions_added: Counter,
    duplicates: Counter,
    suppressed: Counter,
    skipped: Counter,
    rejections: Family<CodeLabels, Counter>,
    http_requests: Family<HttpLabels, Counter>,
    http_seconds: Family<HttpLabels, Histogram, fn() -> Histogram>,
    write_seconds: Histogram,
    job_passes: Family<PassLabels, Counter>,
    deliveries: Family<DeliveryLabels, Counter>,
}

impl Metrics {
    /// A registry with every series, reading the pipeline's counters, the store's event log
    /// and the job scheduler's health at each scrape.
    pub fn new(store: &Arc<dyn Store>, pipeline: &Pipeline, jobs: &Arc<crate::jobs::Health>) -> Metrics {
        let mut registry = Registry::default();
        let mut counter = |name: &str, help: &str| {
            let counter = Counter::default();
            registry.register(name, help, counter.clone());
            counter
        };
        let stored = counter("kith_events_stored", "Events committed");
        let pending = counter("kith_events_pending", "Events stored as pending (unknown user)");
        let interactions_added = counter("kith_interactions_added", "Activity interactions created");
        let duplicates = counter("kith_events_duplicate", "Events acknowledged as replays of a messageId");
        let suppressed = counter("kith_events_suppressed", "Events dropped for a suppressed email");
        let skipped = counter("kith_events_filtered", "Events the integrations object kept away");
        let rejections = Family::default();
        registry.register("kith_rejections", "Refused events and requests by code", rejections.clone());
        let http_requests = Family::default();
        registry.register(
            "kith_http_requests",
            "HTTP requests answered, by route template, method and status",
            http_requests.clone(),
        );
        let http_seconds = Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register(
            "kith_http_request_duration_seconds",
            "Time from a request's arrival to its response's head, by route template, method and status",
            http_seconds.clone(),
        );
        let write_seconds = latency_histogram();
        registry.register(
            "kith_ingest_write_seconds",
            "Time an ingest request waited for the writer to commit its events (queue and transaction)",
            write_seconds.clone(),
        );
        let job_passes = Family::default();
        registry.register("kith_jobs_passes", "Background passes run, by pass and outcome", job_passes.clone());
        let deliveries = Family::default();
        registry.register("kith_deliveries", "Outbound delivery attempts, by kind and outcome", deliveries.clone());
        registry.register_collector(Box::new(PipelineCollector(pipeline.clone())));
        // Weak: the store holds these metrics (through the applied sink `App::new` installs),
        // and a strong reference back would keep both alive after the server stops.
        registry.register_collector(Box::new(EventLogCollector(Arc::downgrade(store))));
        registry.register_collector(Box::new(jobs.clone()));
        Metrics {
            registry,
            stored,
            pending,
            interactions_added,
            duplicates,
            suppressed,
            skipped,
            rejections,
            http_requests,
            http_seconds,
            write_seconds,
            job_passes,
            deliveries,
        }
    }

    /// An event refused while reading it.
    pub fn event_rejected(&self, code: Code) {
        self.count_rejection(code.as_str());
    }

    /// A whole request refused (bad key, too large, bad JSON…).
    pub fn request_refused(&self, code: &str) {
        self.count_rejection(code);
    }

    fn count_rejection(&self, code: &str) {
        self.rejections.get_or_create(&CodeLabels { code: code.to_owned() }).inc();
    }

    /// An event the `integrations` object kept away.
    pub fn event_skipped(&self) {
        self.skipped.inc();
    }

    /// What the writer did with an event.
    pub fn event_outcome(&self, outcome: &Outcome) {
        match outcome {
            Outcome::Stored(stored) => {
                self.stored.inc();
                if stored.pending {
                    self.pending.inc();
                }
                if stored.activity == Activity::Added {
                    self.interactions_added.inc();
                }
            }
            Outcome::Accepted => {
                self.stored.inc();
            }
            Outcome::Duplicate => {
                self.duplicates.inc();
            }
            Outcome::Suppressed => {
                self.suppressed.inc();
            }
            Outcome::Rejected(rejection) => self.event_rejected(rejection.code),
        }
    }

    /// An ingest request's events were committed after waiting `waited` for the writer.
    pub fn events_written(&self, waited: Duration) {
        self.write_seconds.observe(waited.as_secs_f64());
    }

    /// A background pass ended.
    pub fn job_pass(&self, pass: &'static str, outcome: PassOutcome) {
        let outcome = match outcome {
            PassOutcome::Ok => "ok",
            PassOutcome::Failed => "failed",
            PassOutcome::Panicked => "panicked",
        };
        self.job_passes.get_or_create(&PassLabels { pass, outcome }).inc();
    }

    /// A delivery of `kind` was attempted.
    pub fn delivery(&self, kind: &str, outcome: DeliveryOutcome) {
        // The kind comes from the database: only the known ones become label values.
        let kind = match kind {
            "webhook" => "webhook",
            "email" => "email",
            "segment" => "segment",
            _ => "other",
        };
        let outcome = match outcome {
            DeliveryOutcome::Sent => "sent",
            DeliveryOutcome::Retried => "retried",
            DeliveryOutcome::Failed => "failed",
        };
        self.deliveries.get_or_create(&DeliveryLabels { kind, outcome }).inc();
    }

    fn http_request(&self, labels: HttpLabels, took: Duration) {
        self.http_seconds.get_or_create(&labels).observe(took.as_secs_f64());
        self.http_requests.get_or_create(&labels).inc();
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry);
        text
    }
}

/// Middleware counting every request the router answers and timing it to its response's
/// head (a streamed body, like the live debugger's, can last as long as the client stays).
pub async fn observe(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or(UNMATCHED, MatchedPath::as_str).to_owned();
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    metrics.http_request(HttpLabels { route, method, status: response.status().as_u16() }, started.elapsed());
    response
}

/// The method as a label: any method can be sent, only the standard ones become values.
fn method_label(method: &Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

/// Writes one series a collector read at scrape time.
pub fn encode_reading(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: impl EncodeMetric,
) -> fmt::Result {
    let series = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
    metric.encode(series)
}

/// The ingest pipeline's counters: the writer's queue and its transactions.
struct PipelineCollector(Pipeline);

impl fmt::Debug for PipelineCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PipelineCollector")
    }
}

impl Collector for PipelineCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let stats = self.0.stats();
        let load = |value: &AtomicU64| value.load(Ordering::Relaxed);
        let queued = i64::try_from(stats.queued.load(Ordering::Relaxed)).unwrap_or(i64::MAX);
        let e = &mut encoder;
        encode_reading(e, "kith_ingest_queue_events", "Events waiting for or in the writer.", ConstGauge::new(queued))?;
        encode_reading(e, "kith_commits", "Ingest transactions committed.", ConstCounter::new(load(&stats.commits)))?;
        encode_reading(
            e,
            "kith_commit_failures",
            "Ingest transactions that failed.",
            ConstCounter::new(load(&stats.failures)),
        )?;
        encode_reading(
            e,
            "kith_committed_events",
            "Events in committed transactions.",
            ConstCounter::new(load(&stats.committed_events)),
        )?;
        encode_reading(
            e,
            "kith_commit_seconds",
            "Time spent in ingest transactions.",
            Totals { sum: load(&stats.commit_micros) as f64 / 1e6, count: load(&stats.commits) },
        )?;
        encode_reading(
            e,
            "kith_commit_seconds_max",
            "Longest ingest transaction since start.",
            ConstGauge::new(load(&stats.max_commit_micros) as f64 / 1e6),
        )
    }
}

/// A sum and a count of observations, all that the pipeline keeps of its commit times: a
/// histogram whose only bucket is `+Inf`, which gives the `_sum` and `_count` series.
struct Totals {
    sum: f64,
    count: u64,
}

impl EncodeMetric for Totals {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        encoder.encode_histogram::<NoLabelSet>(self.sum, self.count, &[], None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// The event log's gauges: what was acknowledged, what reads see, and the lag between. A
/// backend that applies events as it commits has no log and shows none.
#[derive(Debug)]
struct EventLogCollector(Weak<dyn Store>);

impl Collector for EventLogCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let Some(position) = self.0.upgrade().and_then(|store| store.log_position()) else {
            return Ok(());
        };
        for (name, help, value) in [
            ("kith_event_log_appended", "Events appended to the event log and acknowledged (the last sequence number on SQLite).", position.appended),
            ("kith_event_log_applied", "Events of the event log the projection applied (the last sequence number on SQLite).", position.applied),
            (
                "kith_projection_lag_events",
                "Acknowledged events the projection has not applied yet.",
                position.appended - position.applied,
            ),
            (
                "kith_projection_leases",
                "Parts of the event log this node applies: 1 on SQLite; on PostgreSQL, 1 on the node holding the projection lease, 0 on the others.",
                i64::from(position.leases),
            ),
        ] {
            encode_reading(&mut encoder, name, help, ConstGauge::new(value))?;
        }
        Ok(())
    }
}
