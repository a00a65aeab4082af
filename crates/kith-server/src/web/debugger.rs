//! The live event debugger: the workspace's latest events as they arrive, each with how kith
//! read it (contact, time, description, interaction added or merged into the day) or why it
//! refused it.
//!
//! The page renders the entries kept so far; `/debugger/stream` then sends each new entry as
//! a server-sent event carrying the same HTML row. Entries carry their sequence number as the
//! SSE id, so a reconnecting browser (which sends `Last-Event-ID`) misses nothing still kept.
//! A stream sleeps until its workspace publishes or the server shuts down (no timer wakes
//! it), and a user holds a few streams at most ([`super::WebConfig::streams_per_user`]).

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, StreamExt};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use maud::{html, Markup};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use super::layout::{self, Nav};
use super::session::Signed;
use super::{WebError, WebResult};
use crate::debugger_feed::{DebugEntry, StreamTicket};
use crate::AppState;

/// What a status means, in a sentence.
fn explain(entry: &DebugEntry, tz: &TimeZone) -> String {
    let day = entry.time.as_deref().and_then(|t| t.parse::<Timestamp>().ok()).map(|t| layout::date(t, tz));
    match entry.status.as_str() {
        "added" => format!("Added an interaction to the timeline for {}.", day.unwrap_or_default()),
        "merged" => format!("Merged into the interaction of {} (one more hit).", day.unwrap_or_default()),
        "stored" => "Stored in the contact's event stream; it adds no interaction.".to_owned(),
        "pending" => "Kept as pending: no identify has tied this user to an email yet.".to_owned(),
        "duplicate" => "Already received (same messageId): acknowledged, nothing changed.".to_owned(),
        "suppressed" => "This email is suppressed: acknowledged, not stored.".to_owned(),
        _ => layout::capitalize(entry.message.as_deref().unwrap_or("Rejected.")),
    }
}

/// One row of the debugger.
fn entry_row(entry: &DebugEntry, tz: &TimeZone) -> Markup {
    let received = entry.received_at.parse::<Timestamp>().ok();
    let time = entry.time.as_deref().and_then(|t| t.parse::<Timestamp>().ok());
    let rejected = entry.status == "rejected";
    html! {
        li class={ "dbg dbg-" (entry.status) } data-seq=(entry.seq) {
            div.dbg-head {
                span class={ "status status-" (entry.status) } { (entry.status) }
                @if let Some(event_type) = &entry.event_type { span.pill { (event_type) } }
                @if let Some(code) = &entry.code { code.dbg-code { (code) } }
                span.dbg-received { @if let Some(at) = received { (layout::clock_time(at, tz)) } }
            }
            p.dbg-explain { (explain(entry, tz)) }
            @if !rejected || entry.email.is_some() || entry.user_id.is_some() {
                dl.dbg-facts {
                    @if let Some(email) = &entry.email { dt { "Email" } dd { (email) } }
                    @if let Some(user_id) = &entry.user_id { dt { "userId" } dd { code { (user_id) } } }
                    @if let Some(contact) = entry.contact_id {
                        dt { "Contact" } dd { a href={ "/contacts/" (contact) } { "Open contact " (contact) } }
                    }
                    @if let Some(time) = time { dt { "Time" } dd { (layout::date_time(time, tz)) } }
                    @if let Some(description) = &entry.description { dt { "Description" } dd { (description) } }
                    @if let Some(id) = &entry.message_id { dt { "messageId" } dd { code { (id) } } }
                }
            }
        }
    }
}

/// `GET /debugger`.
pub async fn page(State(state): State<AppState>, signed: Signed, headers: HeaderMap) -> WebResult<Response> {
    let tz = signed.workspace.tz();
    let recent = state.debugger.recent(signed.workspace.id);
    let last_seq = recent.last().map_or(0, |entry| entry.seq);
    let body = html! {
        (layout::page_header("Live debugger", Some(html! {
            "Events as they reach this workspace, and how kith read each one: the contact, the time, the description, "
            "whether it added an interaction or joined the day's, or why it was refused."
        }), Some(html! {
            span.live #live-status role="status" data-state="connecting" { "Connecting…" }
        })))
        p.small.muted { "Accepted events are shown while this page is open; refusals are kept for whoever opens it later." }
        ol.debugger #debugger data-stream="/debugger/stream" data-after=(last_seq) aria-live="polite" {
            @for entry in recent.iter().rev() { (entry_row(entry, &tz)) }
        }
        div #debugger-empty hidden[!recent.is_empty()] {
            (layout::empty_state("Waiting for events", html! {
                p { "Keep this page open and send an event; it appears here at once. Replace YOUR_WRITE_KEY with a write key from "
                    a href="/settings" { "Settings" } ":" }
                (layout::code_block(&layout::first_event_curl(&headers, state.clock.now()), "Copy the curl command"))
            }))
        }
    };
    Ok(layout::page(&signed, Nav::Debugger, "Live debugger", body))
}

/// Where a reconnecting stream resumes.
#[derive(Debug, Default, Deserialize)]
pub struct StreamParams {
    after: Option<u64>,
}

/// `GET /debugger/stream`: server-sent events, one per new entry of the workspace; 429 when
/// the user already holds as many streams as allowed.
pub async fn stream(
    State(state): State<AppState>,
    signed: Signed,
    headers: HeaderMap,
    Query(params): Query<StreamParams>,
) -> Response {
    let Some(ticket) = state.debugger.open_stream(signed.user.id, state.web.config.streams_per_user) else {
        let message = "you have too many live debugger tabs open; close one and reload this page";
        return WebError::Page { status: StatusCode::TOO_MANY_REQUESTS, message: message.to_owned() }.into_response();
    };
    let tz = signed.workspace.tz();
    let subscription = state.debugger.subscribe(signed.workspace.id);
    let after = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .or(params.after)
        .unwrap_or(0);
    let backlog: Vec<Arc<DebugEntry>> = subscription.backlog.into_iter().filter(|entry| entry.seq > after).collect();
    let last_sent = backlog.last().map_or(after, |entry| entry.seq);
    let backlog = stream::iter(backlog.into_iter().map({
        let tz = tz.clone();
        move |entry| Ok(sse_event(&entry, &tz))
    }));
    let live = Live { receiver: subscription.receiver, closed: subscription.closed, tz, last_sent, _ticket: ticket };
    Sse::new(backlog.chain(stream::unfold(live, Live::next))).keep_alive(KeepAlive::default()).into_response()
}

/// The live part of a stream.
struct Live {
    receiver: tokio::sync::broadcast::Receiver<Arc<DebugEntry>>,
    closed: tokio::sync::watch::Receiver<bool>,
    tz: TimeZone,
    last_sent: u64,
    /// Counts the stream against its user until it ends.
    _ticket: StreamTicket,
}

impl Live {
    /// The next entry of the workspace; `None` (the stream ends) when the server shuts down,
    /// so graceful shutdown is not held open by a watching browser.
    async fn next(mut self) -> Option<(Result<Event, Infallible>, Live)> {
        loop {
            let received = tokio::select! {
                received = self.receiver.recv() => received,
                _ = self.closed.wait_for(|closed| *closed) => return None,
            };
            match received {
                Ok(entry) if entry.seq > self.last_sent => {
                    self.last_sent = entry.seq;
                    let event = sse_event(&entry, &self.tz);
                    return Some((Ok(event), self));
                }
                Ok(_) | Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

fn sse_event(entry: &DebugEntry, tz: &TimeZone) -> Event {
    Event::default().event("entry").id(entry.seq.to_string()).data(entry_row(entry, tz).into_string())
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll};
    use std::time::Duration;

    use super::*;
    use crate::debugger_feed::DebugFeed;
    use crate::error::ApiError;

    /// A future that counts how often it is polled, i.e. woken.
    struct Counted<F> {
        inner: Pin<Box<F>>,
        polls: Arc<AtomicUsize>,
    }

    impl<F: Future> Future for Counted<F> {
        type Output = F::Output;

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
            self.polls.fetch_add(1, Ordering::Relaxed);
            self.inner.as_mut().poll(cx)
        }
    }

    #[tokio::test]
    async fn an_idle_stream_wakes_only_for_its_workspace_or_shutdown() {
        let feed = DebugFeed::default();
        let ticket = feed.open_stream(1, 8).expect("a stream");
        let subscription = feed.subscribe(7);
        let live = Live {
            receiver: subscription.receiver,
            closed: subscription.closed,
            tz: TimeZone::UTC,
            last_sent: 0,
            _ticket: ticket,
        };
        let polls = Arc::new(AtomicUsize::new(0));
        let waiting = tokio::spawn(Counted { inner: Box::pin(live.next()), polls: polls.clone() });
        let other = ApiError::unauthorized("another workspace's refusal");
        feed.publish(DebugEntry::refused(8, Timestamp::now(), &other));
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(polls.load(Ordering::Relaxed), 1, "nothing woke the stream: no timer, no other workspace");
        assert!(feed.is_watched());

        feed.close();
        let ended = tokio::time::timeout(Duration::from_secs(1), waiting).await.expect("ends at once").unwrap();
        assert!(ended.is_none(), "shutdown ends the stream");
        assert_eq!(polls.load(Ordering::Relaxed), 2);
        assert!(!feed.is_watched(), "its place is given back");
    }
}
