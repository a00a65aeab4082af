//! Backtests in the web app: what a journey or a rule would have done over a past window,
//! sending nothing — how many contacts entered, reached each step and left, and every message,
//! webhook and call that would have gone out, to whom and when. The replay itself is
//! `service/journeys.rs`; this module only shows it.

use axum::extract::{Path, Query, State};
use axum::response::Response;
use jiff::tz::TimeZone;
use kith_core::journeys::JourneySpec;
use maud::{html, Markup};
use serde::Deserialize;

use super::layout::{self, Nav};
use super::session::Signed;
use super::{WebError, WebResult};
use crate::service::journeys::{self as service, WouldSend, DEFAULT_BACKTEST_DAYS, MAX_BACKTEST_DAYS};
use crate::AppState;

/// The sends a page lists; the counts above them cover all.
const SENDS_SHOWN: usize = 200;

/// `?days=` as typed: a number is checked by the service, anything else is said so.
#[derive(Debug, Deserialize)]
pub struct Window {
    days: Option<String>,
}

impl Window {
    fn days(&self) -> Result<Option<i64>, WebError> {
        match self.days.as_deref().map(str::trim).filter(|days| !days.is_empty()) {
            None => Ok(None),
            Some(days) => days.parse().map(Some).map_err(|_| {
                WebError::bad_request(format!("the window is a whole number of days, 1 to {MAX_BACKTEST_DAYS}"))
            }),
        }
    }
}

/// `GET /journeys/{id}/backtest`.
pub async fn journey(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Query(window): Query<Window>,
    signed: Signed,
) -> WebResult<Response> {
    let journey = service::find(&state, signed.workspace.id, id).await?;
    let days = window.days()?;
    let report = service::backtest(&state, signed.workspace.id, &journey.spec, days).await?;
    let counts = &report.counts;
    let title = format!("Backtest: {}", journey.spec.name);
    let body = html! {
        (layout::page_header(&title, Some(lead(days)), Some(html! { a.button href=(format!("/journeys/{id}")) { "Back to the journey" } })))
        (window_form(&format!("/journeys/{id}/backtest"), days))
        section.card aria-labelledby="totals-title" {
            h2 #totals-title { "Contacts" }
            (totals(&[("Entered", counts.entered), ("Waiting now", counts.active), ("Completed", counts.completed), ("Exited", counts.exited)]))
        }
        section.card aria-labelledby="steps-title" {
            h2 #steps-title { "Steps" }
            div.table-wrap {
                table.table {
                    thead { tr { th scope="col" { "Step" } th scope="col" { "Waiting there now" } th scope="col" { "Passed" } } }
                    tbody {
                        @for count in service::step_counts(&journey.spec, counts) {
                            tr {
                                td { (step_label(&journey.spec, count.step)) }
                                td { (count.waiting) }
                                td { (count.done) }
                            }
                        }
                    }
                }
            }
        }
        (sends(&report.sends, report.sends_total, &signed.workspace.tz()))
    };
    Ok(layout::page(&signed, Nav::Journeys, &title, body))
}

/// `GET /nudges/rules/{id}/backtest`.
pub async fn rule(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Query(window): Query<Window>,
    signed: Signed,
) -> WebResult<Response> {
    let rule = super::nudges::find_rule(&state, &signed, id).await?;
    let days = window.days()?;
    let report = service::backtest_rule(&state, signed.workspace.id, &rule.spec, days).await?;
    let title = format!("Backtest: {}", rule.spec.name);
    let body = html! {
        (layout::page_header(&title, Some(lead(days)), Some(html! { a.button href=(format!("/nudges/rules/{id}")) { "Back to the rule" } })))
        (window_form(&format!("/nudges/rules/{id}/backtest"), days))
        section.card aria-labelledby="totals-title" {
            h2 #totals-title { "Firings" }
            (totals(&[("Triggered", report.triggered), ("Fired", report.fired), ("Cancelled by the unless event", report.cancelled), ("Still waiting", report.waiting)]))
        }
        (sends(&report.sends, report.sends_total, &signed.workspace.tz()))
    };
    Ok(layout::page(&signed, Nav::Nudges, &title, body))
}

fn lead(days: Option<i64>) -> Markup {
    let days = days.unwrap_or(DEFAULT_BACKTEST_DAYS);
    html! { "What it would have done over the last " (days) " days, run over what kith stored. Nothing was sent." }
}

fn window_form(action: &str, days: Option<i64>) -> Markup {
    let days = days.unwrap_or(DEFAULT_BACKTEST_DAYS).to_string();
    html! {
        form.inline-form method="get" action=(action) {
            div.field {
                label for="days" { "Days back" }
                input #days type="number" name="days" min="1" max=(MAX_BACKTEST_DAYS) value=(days);
            }
            button.button type="submit" { "Run again" }
        }
    }
}

fn totals(items: &[(&str, i64)]) -> Markup {
    html! {
        dl.totals {
            @for (label, value) in items {
                div { dt { (label) } dd { (value) } }
            }
        }
    }
}

fn step_label(spec: &JourneySpec, step: u32) -> String {
    let position = spec.steps.iter().position(|s| s.id == step);
    match position.map(|i| (i, &spec.steps[i])) {
        Some((i, s)) => format!("{}. {}", i + 1, s.kind.kind().replace('_', " ")),
        None => format!("step {step} (removed)"),
    }
}

fn sends(sends: &[WouldSend], total: usize, tz: &TimeZone) -> Markup {
    html! {
        section.card aria-labelledby="sends-title" {
            h2 #sends-title { "What it would have sent or done (" (total) ")" }
            @if sends.is_empty() {
                p.muted { "Nothing." }
            } @else {
                @if total > SENDS_SHOWN { p.muted { "The first " (SENDS_SHOWN) " of " (total) "." } }
                div.table-wrap {
                    table.table {
                        thead { tr { th scope="col" { "When" } th scope="col" { "To" } th scope="col" { "What" } } }
                        tbody {
                            @for send in sends.iter().take(SENDS_SHOWN) {
                                tr {
                                    td { (layout::time_tag(send.at, tz)) }
                                    td {
                                        @match (send.contact_id, &send.email, &send.account) {
                                            (Some(id), email, _) => { a href=(format!("/contacts/{id}")) { (email.as_deref().unwrap_or("contact")) } }
                                            (None, _, Some(account)) => { a href=(format!("/accounts/{account}")) { "account " (account) } }
                                            _ => { "—" }
                                        }
                                    }
                                    td {
                                        (send.kind.replace('_', " "))
                                        @if let Some(template) = send.template { " (template " (template) ")" }
                                        @if let Some(step) = send.step { span.muted { " at step id " (step) } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
