//! kith's HTTP layer: the ingest routes, the read API, the web app, operations endpoints and
//! background jobs, around a [`kith_store::Store`].
//!
//! [`App::new`] wires a store to the ingest pipeline; [`App::serve`] runs the server on a
//! listener until a shutdown signal, answers every request in flight, and returns only when
//! everything acknowledged is committed. Tests bind `127.0.0.1:0` and drive it over HTTP.
#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod conn;
pub mod debugger_feed;
pub mod error;
pub mod ingest;
pub mod jobs;
pub mod metrics;
pub mod openapi;
pub mod ops;
pub mod outbound;
pub mod region;
pub mod service;
pub mod transfer;
pub mod web;

use std::future::Future;
use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use kith_store::pipeline::{Pipeline, PipelineConfig};
use kith_store::Store;
use tokio::net::TcpListener;

pub use kith_core::clock::{self, Clock};

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The database.
    pub store: Arc<dyn Store>,
    /// The ingest pipeline.
    pub pipeline: Pipeline,
    /// Key and signing-secret lookups.
    pub auth: Arc<auth::AuthCache>,
    /// The live debugger's feed.
    pub debugger: debugger_feed::DebugFeed,
    /// The series served at `/metrics`.
    pub metrics: Arc<metrics::Metrics>,
    /// The time.
    pub clock: Clock,
    /// Whether the node is shutting down.
    pub readiness: ops::Readiness,
    /// The web app's settings, sign-in throttling and hashing slots.
    pub web: Arc<web::WebState>,
    /// HTTP and SMTP clients for every outbound connection, behind the address policy.
    pub outbound: Arc<outbound::Outbound>,
    /// How the background job scheduler is doing.
    pub jobs: Arc<jobs::Health>,
    /// The bearer token `/metrics` requires, if any.
    pub metrics_token: Option<Arc<str>>,
    /// The region this node serves and every region's address.
    pub regions: Arc<region::Regions>,
    /// The workspaces' keys of message links (unsubscribe, tracking), as read once.
    pub link_keys: Arc<service::messages::LinkKeys>,
}

/// Server settings.
#[derive(Debug, Clone, Default)]
pub struct AppConfig {
    /// Ingest pipeline limits.
    pub pipeline: PipelineConfig,
    /// The SMTP server emails go out through, if any.
    pub smtp: Option<jobs::delivery::SmtpConfig>,
    /// Whether background jobs run on a schedule; tests turn it off and run them on demand
    /// with [`jobs::run_pending`].
    pub manual_jobs: bool,
    /// The web app's settings.
    pub web: web::WebConfig,
    /// Internal address ranges outbound requests may reach anyway (`outbound_allow`).
    pub outbound_allow: Vec<ipnet::IpNet>,
    /// How long the scheduler may make no progress before `/readyz` reports it
    /// ([`jobs::DEFAULT_STALE_AFTER`] when unset).
    pub jobs_stale_after: Option<std::time::Duration>,
    /// Bounds on client connections.
    pub connections: conn::ConnectionLimits,
    /// When set, `/metrics` answers only `Authorization: Bearer <token>`.
    pub metrics_token: Option<String>,
    /// The region this node serves and every region's address (none: no region checks).
    pub regions: region::Regions,
}

/// A running kith: the state and the writer task behind it.
pub struct App {
    /// Shared with handlers.
    pub state: AppState,
    writer: tokio::task::JoinHandle<()>,
    manual_jobs: bool,
    connections: conn::ConnectionLimits,
    metrics_listener: Option<TcpListener>,
}

impl App {
    /// Starts the ingest pipeline on `store`, on the store's clock; fails only on unusable
    /// outbound settings.
    pub fn new(store: Arc<dyn Store>, config: AppConfig) -> anyhow::Result<App> {
        let clock = store.clock();
        let policy = outbound::Policy::new(config.outbound_allow.clone());
        let outbound = Arc::new(outbound::Outbound::new(policy, config.smtp.as_ref())?);
        let jobs = Arc::new(jobs::Health::new(config.jobs_stale_after.unwrap_or(jobs::DEFAULT_STALE_AFTER)));
        let (pipeline, writer) = Pipeline::start(store.clone(), config.pipeline);
        let debugger = debugger_feed::DebugFeed::default();
        let metrics = Arc::new(metrics::Metrics::new(&store, &pipeline, &jobs));
        store.report_applied(applied_reporter(debugger.clone(), metrics.clone()));
        let state = AppState {
            store,
            pipeline,
            auth: Arc::default(),
            debugger,
            metrics,
            clock,
            readiness: ops::Readiness::default(),
            outbound,
            web: Arc::new(web::WebState::new(config.web)),
            jobs,
            metrics_token: config.metrics_token.map(Arc::from),
            regions: Arc::new(config.regions),
            link_keys: Arc::default(),
        };
        Ok(App {
            state,
            writer,
            manual_jobs: config.manual_jobs,
            connections: config.connections,
            metrics_listener: None,
        })
    }

    /// Serves `/metrics` on `listener` only, instead of beside the other routes: scrapers
    /// reach it on a private address while the public one does not answer it.
    pub fn with_metrics_listener(mut self, listener: TcpListener) -> App {
        self.metrics_listener = Some(listener);
        self
    }

    /// Serves until `shutdown` completes, then stops taking requests, answers those in flight
    /// and waits for the writer to commit everything it acknowledged and for it to be applied.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let App { state, writer, manual_jobs, connections, metrics_listener } = self;
        let jobs = if manual_jobs { tokio::spawn(async {}) } else { jobs::start(state.clone()) };
        let readiness = state.readiness.clone();
        let debugger = state.debugger.clone();
        let pipeline = state.pipeline.clone();
        let store = state.store.clone();
        let (stop_metrics, metrics_stopping) = tokio::sync::watch::channel(());
        let metrics_server = metrics_listener.map(|listener| {
            let router = observed(Router::new().route("/metrics", get(ops::metrics)), state.clone());
            let mut stopping = metrics_stopping.clone();
            tokio::spawn(conn::serve(listener, router, connections, async move {
                let _ = stopping.changed().await;
            }))
        });
        let router = if metrics_server.is_some() { routes(state) } else { router(state) };
        conn::serve(listener, router, connections, async move {
            shutdown.await;
            readiness.draining();
            debugger.close();
        })
        .await?;
        let _ = stop_metrics.send(());
        if let Some(metrics_server) = metrics_server {
            let _ = metrics_server.await;
        }
        jobs.abort();
        let _ = jobs.await;
        // No request is in flight any more: the writer commits what is queued and ends.
        pipeline.close();
        let _ = writer.await;
        // Leave the derived data as complete as the log, so the next start has nothing to catch up.
        if let Err(error) = store.settle().await {
            tracing::warn!(%error, "stopped before every acknowledged event was applied; the next start applies the rest");
        }
        Ok(())
    }
}

/// Counts and shows (in the live debugger) each event a store with an event log applied.
fn applied_reporter(debugger: debugger_feed::DebugFeed, metrics: Arc<metrics::Metrics>) -> kith_store::AppliedSink {
    Arc::new(move |events, outcomes| {
        let watched = debugger.is_watched();
        for (incoming, outcome) in events.iter().zip(outcomes) {
            metrics.event_outcome(outcome);
            if watched {
                let reading = debugger_feed::Reading::of(incoming);
                debugger.publish(debugger_feed::DebugEntry::read(
                    incoming.workspace_id,
                    incoming.event.received_at,
                    reading,
                    outcome,
                ));
            }
        }
    })
}

/// Every route.
pub fn router(state: AppState) -> Router {
    observed(app_routes().route("/metrics", get(ops::metrics)), state)
}

/// Every route but `/metrics`.
fn routes(state: AppState) -> Router {
    observed(app_routes(), state)
}

/// The routes, before the state and the metrics layer are added.
fn app_routes() -> Router<AppState> {
    Router::new()
        .merge(ingest::routes())
        .merge(api::routes())
        .merge(web::routes())
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/api/openapi.json", get(openapi::openapi_json))
}

/// `routes` with every request counted and timed by its route (see [`metrics::observe`]).
fn observed(routes: Router<AppState>, state: AppState) -> Router {
    let metrics = state.metrics.clone();
    routes.layer(axum::middleware::from_fn_with_state(metrics, metrics::observe)).with_state(state)
}
