//! Delivering the outbox: webhooks, emails, messages to contacts and batches of track calls
//! to an outbound Segment host. A delivery is leased, attempted, and then sent, retried later (408, 429,
//! 5xx, timeouts; with backoff, jitter and Retry-After, for up to four hours) or failed.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;
use jiff::{SignedDuration, Timestamp};
use kith_core::rules::{after_attempt, Delivery as Decision};
use kith_store::{Delivery, DeliveryResult, StepChange, StoreError};
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::Message;
use rand::Rng;
use serde::Serialize;
use serde_json::{json, Value};

use crate::metrics::DeliveryOutcome;
use crate::outbound::{segment_batch_url, MailError};
use crate::service::messages::{self, Outgoing, Prepared};
use crate::AppState;

/// Deliveries leased per pass.
const PER_PASS: usize = 100;
/// How long a lease lasts: a worker that dies mid-send leaves its deliveries to others after it.
const LEASE: SignedDuration = SignedDuration::from_secs(60);
/// Track calls per request to an outbound Segment host.
const SEGMENT_BATCH: usize = 100;

/// SMTP settings.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    /// `smtp://user:password@host:587?tls=required` (STARTTLS), `smtps://user:password@host`
    /// (TLS), or `smtp://host:25` (plain, for a local relay).
    pub url: String,
    /// The From address.
    pub from: String,
}

/// What a pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Serialize)]
pub struct Report {
    /// Deliveries the receiver took in this pass.
    pub sent: u64,
    /// To be tried again.
    pub retried: u64,
    /// Given up.
    pub failed: u64,
    /// Messages the contact's consent or the frequency cap did not allow.
    pub skipped: u64,
    /// Messages held until the contact's quiet hours end.
    pub held: u64,
    /// Messages whose address the mail server refused for good.
    pub bounced: u64,
}

impl Report {
    /// Deliveries dealt with: attempts made, and messages skipped without one.
    pub fn attempted(&self) -> u64 {
        self.sent + self.retried + self.failed + self.skipped + self.held + self.bounced
    }

    /// Adds another pass.
    pub fn add(&mut self, other: &Report) {
        self.sent += other.sent;
        self.retried += other.retried;
        self.failed += other.failed;
        self.skipped += other.skipped;
        self.held += other.held;
        self.bounced += other.bounced;
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

/// Leases the deliveries due now and attempts each. A delivery whose handling panics is
/// marked failed and the others go on: one bad target cannot stop the outbox.
pub async fn deliver_due(state: &AppState) -> Result<Report, StoreError> {
    let now = state.clock.now();
    let claimed = state.store.claim_deliveries(now, PER_PASS, LEASE).await?;
    let mut report = Report::default();
    let mut segment: BTreeMap<(i64, String), Vec<Delivery>> = BTreeMap::new();
    for delivery in claimed {
        if delivery.kind == "segment" {
            segment.entry((delivery.workspace_id, delivery.target.clone())).or_default().push(delivery);
            continue;
        }
        if delivery.kind == "message" {
            deliver_message(state, &delivery, now, &mut report).await?;
            continue;
        }
        if delivery.kind == "note" || delivery.kind == "cadence" {
            apply_to_contact(state, &delivery, now, &mut report).await?;
            continue;
        }
        let attempt = AssertUnwindSafe(attempt_one(state, &delivery, now)).catch_unwind().await;
        settle(state, std::slice::from_ref(&delivery), attempt, now, &mut report).await?;
    }
    for ((workspace, host), deliveries) in segment {
        let destination = state.store.segment_destination(workspace).await?;
        for chunk in deliveries.chunks(SEGMENT_BATCH) {
            let attempt = AssertUnwindSafe(send_segment(state, &destination, &host, chunk, now)).catch_unwind().await;
            settle(state, chunk, attempt, now, &mut report).await?;
        }
    }
    Ok(report)
}

async fn attempt_one(state: &AppState, delivery: &Delivery, now: Timestamp) -> Attempt {
    match delivery.kind.as_str() {
        "webhook" => post_json(state, &delivery.target, &delivery.payload, None, now).await,
        "email" => send_email(state, delivery).await,
        other => Attempt { status: Some(400), retry_after: None, error: Some(format!("unknown kind {other}")) },
    }
}

async fn send_segment(
    state: &AppState,
    destination: &Option<(String, String)>,
    host: &str,
    chunk: &[Delivery],
    now: Timestamp,
) -> Attempt {
    match destination {
        Some((configured, key)) if configured == host => {
            let batch: Vec<&Value> = chunk.iter().map(|d| &d.payload).collect();
            let body = json!({"batch": batch, "sentAt": now.to_string()});
            post_json(state, &segment_batch_url(host), &body, Some(key), now).await
        }
        _ => Attempt {
            status: Some(400),
            retry_after: None,
            error: Some("outbound Segment is no longer configured for this host".into()),
        },
    }
}

/// Posts through the outbound client. An error answer is recorded by its status line only:
/// its body could be anything the receiver chose to send back, and deliveries are shown to
/// every user of the workspace.
async fn post_json(state: &AppState, url: &str, body: &Value, basic_key: Option<&str>, now: Timestamp) -> Attempt {
    match state.outbound.post_json(url, body, basic_key).await {
        Err(error) => Attempt::unreachable(error),
        Ok(answer) => Attempt {
            status: Some(answer.status.as_u16()),
            retry_after: answer.retry_after.as_deref().and_then(|value| parse_retry_after(value, now)),
            error: (!answer.status.is_success())
                .then(|| format!("{} {}", answer.status.as_u16(), answer.status.canonical_reason().unwrap_or("error"))),
        },
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

fn refused(error: String) -> Attempt {
    Attempt { status: Some(400), retry_after: None, error: Some(error) }
}

async fn send_email(state: &AppState, delivery: &Delivery) -> Attempt {
    let Some(from) = state.outbound.smtp_from() else {
        return refused("no SMTP server is configured (smtp_url, smtp_from)".into());
    };
    let text = |field: &str| delivery.payload.get(field).and_then(Value::as_str).unwrap_or_default().to_owned();
    let to: Mailbox = match delivery.target.parse() {
        Ok(to) => to,
        Err(error) => return refused(format!("bad recipient: {error}")),
    };
    let message = match Message::builder().from(from.clone()).to(to).subject(text("subject")).body(text("body")) {
        Ok(message) => message,
        Err(error) => return refused(error.to_string()),
    };
    send_mail(state, message).await
}

/// A message to a contact: checked against its consent, quiet hours and the frequency cap and
/// rendered now (an unsubscribe that arrived while it waited counts), then sent like any email.
/// A skip, a hold, a send or a bounce is written to the contact's message log (a held message's
/// entry becomes what happens to it when it goes, `failed` if it cannot go); a hold waits in the
/// outbox.
async fn deliver_message(
    state: &AppState,
    delivery: &Delivery,
    now: Timestamp,
    report: &mut Report,
) -> Result<(), StoreError> {
    let one = std::slice::from_ref(delivery);
    let workspace = delivery.workspace_id;
    let prepared = match AssertUnwindSafe(messages::prepare(state, delivery, now)).catch_unwind().await {
        Ok(prepared) => prepared?,
        Err(panic) => return settle(state, one, Err(panic), now, report).await,
    };
    match prepared {
        Prepared::Skip(entry) => {
            let reason = entry.reason.clone().unwrap_or_default();
            state.store.record_message(workspace, entry).await?;
            state.store.finish_delivery(delivery.id, DeliveryResult::Skipped { reason }, now).await?;
            report.skipped += 1;
            state.jobs.progress();
            Ok(())
        }
        Prepared::Hold(until, entry) => {
            state.store.record_message(workspace, entry).await?;
            let error = format!("held for the contact's quiet hours, until {until}");
            state.store.finish_delivery(delivery.id, DeliveryResult::Retry { at: until, error }, now).await?;
            report.held += 1;
            state.jobs.progress();
            Ok(())
        }
        Prepared::Fail(error) => {
            state.store.fail_held_message(workspace, delivery.id, &error, now).await?;
            settle(state, one, Ok(refused(error)), now, report).await
        }
        Prepared::Send(outgoing, entry) => {
            let message = match message_mail(state, &outgoing) {
                Ok(message) => message,
                Err(error) => {
                    state.store.fail_held_message(workspace, delivery.id, &error, now).await?;
                    return settle(state, one, Ok(refused(error)), now, report).await;
                }
            };
            let result = AssertUnwindSafe(state.outbound.send_mail(message)).catch_unwind().await;
            if let Ok(Err(MailError::Bounced(reply))) = &result {
                // Retrying cannot help, and the next message to this address must not be tried.
                messages::bounced(state, workspace, entry, &outgoing.to, reply).await?;
                let error = format!("hard bounce: {reply}");
                state.store.finish_delivery(delivery.id, DeliveryResult::Failed { error }, now).await?;
                state.metrics.delivery(&delivery.kind, DeliveryOutcome::Failed);
                report.bounced += 1;
                state.jobs.progress();
                return Ok(());
            }
            let attempt = result.map(mail_attempt);
            let sent = matches!(&attempt, Ok(Attempt { status: Some(200), .. }));
            let error = attempt.as_ref().ok().and_then(|attempt| attempt.error.clone());
            let failed_before = report.failed;
            settle(state, one, attempt, now, report).await?;
            if sent {
                messages::delivered(state, workspace, entry).await?;
            } else if report.failed > failed_before {
                let error = error.unwrap_or_else(|| "internal error; see the server log".into());
                state.store.fail_held_message(workspace, delivery.id, &error, now).await?;
            }
            Ok(())
        }
    }
}

/// A journey's note or cadence step, applied to the contact through the store as a person's
/// would be. Queued in the outbox with the step's record, so it happens even if the node that
/// took the step stops right after; applied and marked sent in one transaction, so it happens
/// once even if this node stops in between.
async fn apply_to_contact(
    state: &AppState,
    delivery: &Delivery,
    now: Timestamp,
    report: &mut Report,
) -> Result<(), StoreError> {
    let payload = &delivery.payload;
    let contact = payload.get("contact_id").and_then(Value::as_i64);
    let change = match delivery.kind.as_str() {
        "note" => payload.get("text").and_then(Value::as_str).map(|text| StepChange::Note(text.to_owned())),
        _ => payload.get("days").map(|days| StepChange::Cadence(days.as_i64())),
    };
    let (Some(contact), Some(change)) = (contact, change) else {
        let refused = Ok(refused("not a step kith queued".into()));
        return settle(state, std::slice::from_ref(delivery), refused, now, report).await;
    };
    match state.store.apply_to_contact(delivery.id, delivery.workspace_id, contact, change, now).await {
        Ok(applied) => {
            if applied {
                report.sent += 1;
                state.metrics.delivery(&delivery.kind, DeliveryOutcome::Sent);
            }
            state.jobs.progress();
            Ok(())
        }
        // The contact was erased or merged away meanwhile: nothing left to apply it to.
        Err(StoreError::NotFound(what)) => {
            let refused = Ok(refused(format!("{what} no longer exists")));
            settle(state, std::slice::from_ref(delivery), refused, now, report).await
        }
        Err(error) => Err(error),
    }
}

/// The email of a message: from the workspace's sender (else the server's `smtp_from`), both
/// bodies, and the RFC 8058 one-click unsubscribe headers.
fn message_mail(state: &AppState, outgoing: &Outgoing) -> Result<Message, String> {
    let sender = &outgoing.sender;
    let from = match &sender.from_address {
        Some(address) => Mailbox::new(
            sender.from_name.clone(),
            address.parse().map_err(|error| format!("bad from address {address:?}: {error}"))?,
        ),
        None => state.outbound.smtp_from().cloned().ok_or("no SMTP server is configured (smtp_url, smtp_from)")?,
    };
    let to: Mailbox = outgoing.to.parse().map_err(|error| format!("bad recipient: {error}"))?;
    let mut builder = Message::builder()
        .from(from)
        .to(to)
        .subject(outgoing.rendered.subject.clone())
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("List-Unsubscribe"),
            format!("<{}>", outgoing.unsubscribe_url),
        ))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
            "List-Unsubscribe=One-Click".into(),
        ));
    if let Some(reply_to) = &sender.reply_to {
        builder = builder.reply_to(reply_to.parse().map_err(|error| format!("bad reply-to {reply_to:?}: {error}"))?);
    }
    builder
        .multipart(MultiPart::alternative_plain_html(outgoing.rendered.text.clone(), outgoing.rendered.html.clone()))
        .map_err(|error| error.to_string())
}

/// Sends a message at once, outside the outbox (a test send from the template editor): the same
/// mail a rule's message would be; the error says why it could not go.
pub async fn send_now(state: &AppState, outgoing: &Outgoing) -> Result<(), String> {
    let message = message_mail(state, outgoing)?;
    match state.outbound.send_mail(message).await {
        Ok(()) => Ok(()),
        Err(MailError::NotConfigured) => Err("no SMTP server is configured (smtp_url, smtp_from)".into()),
        Err(MailError::Permanent(error) | MailError::Bounced(error) | MailError::Transient(error)) => Err(error),
    }
}

async fn send_mail(state: &AppState, message: Message) -> Attempt {
    mail_attempt(state.outbound.send_mail(message).await)
}

/// How sending an email ended, as an attempt.
fn mail_attempt(result: Result<(), MailError>) -> Attempt {
    match result {
        Ok(()) => Attempt { status: Some(200), retry_after: None, error: None },
        Err(MailError::NotConfigured) => refused("no SMTP server is configured (smtp_url, smtp_from)".into()),
        // A permanent SMTP refusal (5xx) will not change; anything else may.
        Err(MailError::Permanent(error) | MailError::Bounced(error)) => refused(error),
        Err(MailError::Transient(error)) => Attempt::unreachable(error),
    }
}

/// Records how an attempt ended for each delivery it carried; an attempt that panicked
/// fails them (retrying would panic again).
async fn settle(
    state: &AppState,
    deliveries: &[Delivery],
    attempt: std::thread::Result<Attempt>,
    now: Timestamp,
    report: &mut Report,
) -> Result<(), StoreError> {
    let (attempt, panicked) = match attempt {
        Ok(attempt) => (attempt, false),
        Err(_) => {
            tracing::error!(ids = ?deliveries.iter().map(|d| d.id).collect::<Vec<_>>(), "sending a delivery panicked");
            let error = Some("internal error; see the server log".into());
            (Attempt { status: None, retry_after: None, error }, true)
        }
    };
    for delivery in deliveries {
        let attempts = u32::try_from(delivery.attempts).unwrap_or(u32::MAX).saturating_add(1);
        let age = now.duration_since(delivery.created_at);
        let jitter = rand::rng().random::<f64>();
        let decision = if panicked {
            Decision::GiveUp
        } else {
            after_attempt(attempt.status, attempt.retry_after, attempts, age, jitter)
        };
        let error = attempt.error.clone();
        let result = match decision {
            Decision::Sent => {
                report.sent += 1;
                state.metrics.delivery(&delivery.kind, DeliveryOutcome::Sent);
                DeliveryResult::Sent
            }
            Decision::RetryAfter(delay) => {
                report.retried += 1;
                state.metrics.delivery(&delivery.kind, DeliveryOutcome::Retried);
                DeliveryResult::Retry {
                    at: now.checked_add(delay).unwrap_or(Timestamp::MAX),
                    error: error.unwrap_or_default(),
                }
            }
            Decision::GiveUp => {
                report.failed += 1;
                state.metrics.delivery(&delivery.kind, DeliveryOutcome::Failed);
                tracing::warn!(id = delivery.id, kind = %delivery.kind, error = ?error, "delivery failed for good");
                DeliveryResult::Failed { error: error.unwrap_or_else(|| "gave up".into()) }
            }
        };
        state.store.finish_delivery(delivery.id, result, now).await?;
        state.jobs.progress();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_seconds_or_a_date() {
        let now: Timestamp = "2015-10-21T07:20:00Z".parse().unwrap();
        assert_eq!(parse_retry_after("120", now), Some(SignedDuration::from_secs(120)));
        assert_eq!(parse_retry_after("9223372036854775807", now), Some(SignedDuration::from_secs(i64::MAX)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now), Some(SignedDuration::from_mins(8)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now), Some(SignedDuration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
