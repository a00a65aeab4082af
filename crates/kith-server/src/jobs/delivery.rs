//! Delivering the outbox: webhooks, emails and batches of track calls to an outbound
//! Segment host. A delivery is leased, attempted, and then sent, retried later (408, 429,
//! 5xx, timeouts; with backoff, jitter and Retry-After, for up to four hours) or failed.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use kith_core::rules::{after_attempt, Delivery as Decision};
use kith_store::{Delivery, DeliveryResult, StoreError};
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use rand::Rng;
use serde::Serialize;
use serde_json::{json, Value};

use crate::AppState;

/// Deliveries leased per pass.
const PER_PASS: usize = 100;
/// How long a lease lasts: a worker that dies mid-send leaves its deliveries to others after it.
const LEASE: SignedDuration = SignedDuration::from_secs(60);
/// How long one HTTP attempt may take.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Track calls per request to an outbound Segment host.
const SEGMENT_BATCH: usize = 100;

/// The clients deliveries go out through.
pub struct Outbound {
    http: reqwest::Client,
    smtp: Option<(AsyncSmtpTransport<Tokio1Executor>, Mailbox)>,
}

/// SMTP settings.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    /// `smtp://user:password@host:587?tls=required` (STARTTLS), `smtps://user:password@host`
    /// (TLS), or `smtp://host:25` (plain, for a local relay).
    pub url: String,
    /// The From address.
    pub from: String,
}

impl Outbound {
    /// Builds the clients; an unusable SMTP setting is an error at start, not at first send.
    pub fn new(smtp: Option<&SmtpConfig>) -> anyhow::Result<Outbound> {
        let http = reqwest::Client::builder()
            .timeout(HTTP_TIMEOUT)
            .user_agent(concat!("kith/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let smtp = match smtp {
            None => None,
            Some(config) => {
                let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&config.url)
                    .map_err(|e| anyhow::anyhow!("smtp_url is not usable: {e}"))?
                    .timeout(Some(HTTP_TIMEOUT))
                    .build();
                let from: Mailbox = config
                    .from
                    .parse()
                    .map_err(|e| anyhow::anyhow!("smtp_from {:?} is not an address: {e}", config.from))?;
                Some((transport, from))
            }
        };
        Ok(Outbound { http, smtp })
    }
}

/// What a pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Serialize)]
pub struct Report {
    /// Delivered.
    pub sent: u64,
    /// To be tried again.
    pub retried: u64,
    /// Given up.
    pub failed: u64,
}

impl Report {
    /// Attempts made.
    pub fn attempted(&self) -> u64 {
        self.sent + self.retried + self.failed
    }

    /// Adds another pass.
    pub fn add(&mut self, other: &Report) {
        self.sent += other.sent;
        self.retried += other.retried;
        self.failed += other.failed;
    }
}

/// How one attempt ended, before the retry policy is applied.
struct Attempt {
    /// HTTP status, or an SMTP reply mapped onto one; `None` when nothing answered.
    status: Option<u16>,
    retry_after: Option<SignedDuration>,
    error: Option<String>,
}

impl Attempt {
    fn unreachable(error: impl std::fmt::Display) -> Self {
        Attempt { status: None, retry_after: None, error: Some(error.to_string()) }
    }
}

/// Leases the deliveries due now and attempts each.
pub async fn deliver_due(state: &AppState) -> Result<Report, StoreError> {
    let now = state.clock.now();
    let claimed = state.store.claim_deliveries(now, PER_PASS, LEASE).await?;
    let mut report = Report::default();
    let mut segment: BTreeMap<(i64, String), Vec<Delivery>> = BTreeMap::new();
    for delivery in claimed {
        match delivery.kind.as_str() {
            "segment" => segment.entry((delivery.workspace_id, delivery.target.clone())).or_default().push(delivery),
            "webhook" => {
                let attempt = post_json(&state.outbound.http, &delivery.target, &delivery.payload, None, now).await;
                settle(state, &delivery, attempt, now, &mut report).await?;
            }
            "email" => {
                let attempt = send_email(state, &delivery).await;
                settle(state, &delivery, attempt, now, &mut report).await?;
            }
            other => {
                let attempt =
                    Attempt { status: Some(400), retry_after: None, error: Some(format!("unknown kind {other}")) };
                settle(state, &delivery, attempt, now, &mut report).await?;
            }
        }
    }
    for ((workspace, host), deliveries) in segment {
        let destination = state.store.segment_destination(workspace).await?;
        for chunk in deliveries.chunks(SEGMENT_BATCH) {
            let attempt = match &destination {
                Some((configured, key)) if *configured == host => {
                    let batch: Vec<&Value> = chunk.iter().map(|d| &d.payload).collect();
                    let body = json!({"batch": batch, "sentAt": now.to_string()});
                    post_json(&state.outbound.http, &batch_url(&host), &body, Some(key), now).await
                }
                _ => Attempt {
                    status: Some(400),
                    retry_after: None,
                    error: Some("outbound Segment is no longer configured for this host".into()),
                },
            };
            for delivery in chunk {
                let attempt = Attempt { error: attempt.error.clone(), ..attempt };
                settle(state, delivery, attempt, now, &mut report).await?;
            }
        }
    }
    Ok(report)
}

/// `{host}/v1/batch`, with https assumed when the host names no scheme.
fn batch_url(host: &str) -> String {
    let host = host.trim().trim_end_matches('/');
    if host.starts_with("http://") || host.starts_with("https://") {
        format!("{host}/v1/batch")
    } else {
        format!("https://{host}/v1/batch")
    }
}

async fn post_json(
    client: &reqwest::Client,
    url: &str,
    body: &Value,
    basic_key: Option<&str>,
    now: Timestamp,
) -> Attempt {
    let mut request = client.post(url).json(body);
    if let Some(key) = basic_key {
        request = request.basic_auth(key, Some(""));
    }
    match request.send().await {
        Err(error) => Attempt::unreachable(error),
        Ok(response) => {
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| parse_retry_after(value, now));
            let error = (!response.status().is_success())
                .then(|| format!("{} {}", status, response.status().canonical_reason().unwrap_or("error")));
            let error = match error {
                Some(error) => {
                    let text = response.text().await.unwrap_or_default();
                    Some(if text.is_empty() { error } else { format!("{error}: {}", truncate(&text, 300)) })
                }
                None => None,
            };
            Attempt { status: Some(status), retry_after, error }
        }
    }
}

/// `Retry-After` as seconds or an HTTP date, the date counted from `now`: the job's clock,
/// which also stamps the next attempt.
fn parse_retry_after(value: &str, now: Timestamp) -> Option<SignedDuration> {
    if let Ok(seconds) = value.trim().parse::<i64>() {
        return Some(SignedDuration::from_secs(seconds.max(0)));
    }
    let at = jiff::fmt::rfc2822::parse(value.trim()).ok()?.timestamp();
    Some(at.duration_since(now).max(SignedDuration::ZERO))
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

async fn send_email(state: &AppState, delivery: &Delivery) -> Attempt {
    let Some((transport, from)) = &state.outbound.smtp else {
        return Attempt {
            status: Some(400),
            retry_after: None,
            error: Some("no SMTP server is configured (smtp_url, smtp_from)".into()),
        };
    };
    let text = |field: &str| delivery.payload.get(field).and_then(Value::as_str).unwrap_or_default().to_owned();
    let to: Mailbox = match delivery.target.parse() {
        Ok(to) => to,
        Err(error) => {
            return Attempt { status: Some(400), retry_after: None, error: Some(format!("bad recipient: {error}")) }
        }
    };
    let message = match Message::builder().from(from.clone()).to(to).subject(text("subject")).body(text("body")) {
        Ok(message) => message,
        Err(error) => return Attempt { status: Some(400), retry_after: None, error: Some(error.to_string()) },
    };
    match transport.send(message).await {
        Ok(_) => Attempt { status: Some(200), retry_after: None, error: None },
        // A permanent SMTP refusal (5xx) will not change; anything else may.
        Err(error) if error.is_permanent() => {
            Attempt { status: Some(400), retry_after: None, error: Some(error.to_string()) }
        }
        Err(error) => Attempt::unreachable(error),
    }
}

async fn settle(
    state: &AppState,
    delivery: &Delivery,
    attempt: Attempt,
    now: Timestamp,
    report: &mut Report,
) -> Result<(), StoreError> {
    let attempts = u32::try_from(delivery.attempts).unwrap_or(u32::MAX).saturating_add(1);
    let age = now.duration_since(delivery.created_at);
    let jitter = rand::rng().random::<f64>();
    let result = match after_attempt(attempt.status, attempt.retry_after, attempts, age, jitter) {
        Decision::Sent => {
            report.sent += 1;
            DeliveryResult::Sent
        }
        Decision::RetryAfter(delay) => {
            report.retried += 1;
            DeliveryResult::Retry { at: now + delay, error: attempt.error.unwrap_or_default() }
        }
        Decision::GiveUp => {
            report.failed += 1;
            tracing::warn!(id = delivery.id, kind = %delivery.kind, error = ?attempt.error, "delivery failed for good");
            DeliveryResult::Failed { error: attempt.error.unwrap_or_else(|| "gave up".into()) }
        }
    };
    state.store.finish_delivery(delivery.id, result, now).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_get_a_scheme_and_the_batch_path() {
        assert_eq!(batch_url("api.segment.io"), "https://api.segment.io/v1/batch");
        assert_eq!(batch_url("http://127.0.0.1:8080/"), "http://127.0.0.1:8080/v1/batch");
    }

    #[test]
    fn retry_after_is_seconds_or_a_date() {
        let now: Timestamp = "2015-10-21T07:20:00Z".parse().unwrap();
        assert_eq!(parse_retry_after("120", now), Some(SignedDuration::from_secs(120)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now), Some(SignedDuration::from_mins(8)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now), Some(SignedDuration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
