//! Nudges: rules (when / unless / then), outbound Segment, the daily digest, and what was
//! delivered. Rules are written as the JSON the API takes, with a worked example, because a
//! rule is a small program and the JSON is its one exact form.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use kith_core::rules::{Action, RuleSpec, Trigger};
use kith_store::Rule;
use maud::{html, Markup};
use serde::Deserialize;

use super::layout::{self, AlertKind, Nav};
use super::session::{Empty, Posted, Signed};
use super::{save_settings, WebError, WebResult};
use crate::service::nudges::{check_rule, check_templates};
use crate::service::settings::WorkspaceChange;
use crate::AppState;

/// The example a new rule starts from.
const EXAMPLE_RULE: &str = r#"{
  "name": "Enterprise signup without a teammate",
  "when": {"event": {"name": "Signed Up", "where": {"plan": "enterprise"}}},
  "unless": {"event": "Invited Teammate", "within_hours": 48},
  "then": [{"webhook": {"url": "https://hooks.slack.com/services/…",
                        "text": "{name} ({email}) signed up two days ago and invited nobody"}}]
}"#;

/// Deliveries shown.
const DELIVERIES_SHOWN: usize = 30;

/// Which form a message concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    Rule,
    Segment,
    Digest,
}

#[derive(Default)]
struct Notice {
    message: Option<(Form, AlertKind, String)>,
    /// The rule text to show again after an error.
    draft: Option<String>,
}

/// `GET /nudges`.
pub async fn page(State(state): State<AppState>, signed: Signed) -> WebResult<Response> {
    render(&state, &signed, Notice::default(), StatusCode::OK).await
}

fn describe_when(when: &Trigger) -> String {
    let contact = |what: String| format!("When a contact {what}");
    match when {
        Trigger::Event { name, conditions } if conditions.is_empty() => contact(format!("does “{name}”")),
        Trigger::Event { name, conditions } => {
            let conditions: Vec<String> = conditions.iter().map(|(k, v)| format!("{k} = {v}")).collect();
            contact(format!("does “{name}” with {}", conditions.join(", ")))
        }
        Trigger::AudienceEntered { audience } => contact(format!("enters audience {audience}")),
        Trigger::AudienceExited { audience } => contact(format!("exits audience {audience}")),
        Trigger::BecomesDue {} => contact("becomes due a touch".to_owned()),
        Trigger::BucketChanged { to, from: Some(from) } => {
            contact(format!("goes from {} to {}", from.as_str(), to.as_str()))
        }
        Trigger::BucketChanged { to, from: None } => contact(format!("becomes {}", to.as_str())),
        Trigger::HealthBandChanged { to, from } => format!(
            "When an account's health goes{}{}",
            from.map(|band| format!(" from {}", band.label())).unwrap_or_default(),
            to.map_or_else(|| " into another band".to_owned(), |band| format!(" to {}", band.label()))
        ),
        Trigger::HealthDropped { points, within_days } => {
            format!("When an account's health falls {points} points within {within_days} days")
        }
    }
}

fn describe_then(action: &Action) -> String {
    match action {
        Action::Webhook { url, .. } => format!("post to {}", url.split('/').take(3).collect::<Vec<_>>().join("/")),
        Action::Email { to, .. } => format!("email {to}"),
        Action::Message { template } => format!("send template {template} to the contact"),
        Action::EmailOwner { .. } => "email the account's owner".to_owned(),
        Action::Segment { event } => format!("send “{}” to Segment", event.as_deref().unwrap_or("Nudge Sent")),
    }
}

fn rule_row(rule: &Rule, signed: &Signed, tz: &jiff::tz::TimeZone) -> Markup {
    let spec = &rule.spec;
    html! {
        tr {
            td {
                strong { (spec.name) }
                span.sub {
                    (describe_when(&spec.when))
                    @if let Some(unless) = &spec.unless {
                        " and does not “" (unless.event) "” within " (unless.within_hours) " h"
                    }
                    ": " (spec.then.iter().map(describe_then).collect::<Vec<_>>().join(", ")) "."
                }
            }
            td.hide-sm { (layout::time_tag(rule.updated_at, tz)) }
            td {
                @if spec.enabled { span.tag.tag-in { "on" } } @else { span.tag { "off" } }
            }
            td {
                form.inline method="post" action={ "/nudges/rules/" (rule.id) "/toggle" } {
                    (layout::csrf(signed))
                    button.button.button-small type="submit" aria-label={ (if spec.enabled { "Turn off " } else { "Turn on " }) (spec.name) } {
                        @if spec.enabled { "Turn off" } @else { "Turn on" }
                    }
                }
                " "
                form.inline method="post" action={ "/nudges/rules/" (rule.id) "/delete" }
                    data-confirm={ "Delete the rule " (spec.name) "? Nudges waiting on it are cancelled." } {
                    (layout::csrf(signed))
                    button.button.button-small.button-danger type="submit" aria-label={ "Delete " (spec.name) } { "Delete" }
                }
            }
        }
    }
}

async fn render(state: &AppState, signed: &Signed, notice: Notice, status: StatusCode) -> WebResult<Response> {
    let workspace = &signed.workspace;
    let tz = workspace.tz();
    let rules = state.store.rules(workspace.id).await?;
    let deliveries = state.store.deliveries(workspace.id, None, None, DELIVERIES_SHOWN).await?;
    let message_for = |form: Form| -> Markup {
        html! {
            @if let Some((_, kind, message)) = notice.message.as_ref().filter(|(f, _, _)| *f == form) {
                (layout::alert(*kind, message))
            }
        }
    };
    let body = html! {
        (layout::page_header("Nudges", Some(html! { "Act when a contact does something — or stops doing it." }), None))
        div.settings {
            section.card #rules aria-labelledby="rules-title" {
                h2 #rules-title { "Rules" }
                (message_for(Form::Rule))
                @if rules.is_empty() {
                    p.muted { "No rule yet. Start from the example below: it posts to Slack when an enterprise user signs up and invites nobody within two days." }
                } @else {
                    div.table-wrap {
                        table.table {
                            thead { tr { th scope="col" { "Rule" } th.hide-sm scope="col" { "Changed" } th scope="col" { "State" } th scope="col" { "" } } }
                            tbody { @for rule in &rules { (rule_row(rule, signed, &tz)) } }
                        }
                    }
                }
                form.stack method="post" action="/nudges/rules" {
                    (layout::csrf(signed))
                    div.field {
                        label for="rule" { "New rule" }
                        textarea #rule name="rule" rows="10" spellcheck="false" required { (notice.draft.as_deref().unwrap_or(EXAMPLE_RULE)) }
                        p.hint {
                            "When: " code { "event" } " (with " code { "where" } " property values), " code { "audience_entered" } ", "
                            code { "audience_exited" } ", " code { "becomes_due" } ", " code { "bucket_changed" } ". Then: "
                            code { "webhook" } ", " code { "email" } ", " code { "segment" } ". Texts may use {name}, {email}, {rule} and {event}."
                        }
                    }
                    div { button.button.button-primary type="submit" { "Create rule" } }
                }
            }
            section.card #segment aria-labelledby="segment-title" {
                h2 #segment-title { "Send to Segment" }
                (message_for(Form::Segment))
                p.small.muted { "kith sends Contact Became Close, Contact Went Cold, Audience Entered/Exited and Nudge Sent as track calls to this host." }
                form.stack method="post" action="/nudges/segment" {
                    (layout::csrf(signed))
                    div.field {
                        label for="segment-host" { "Host" }
                        input #segment-host type="text" name="segment_host" placeholder="api.segment.io" value=(workspace.segment_host.as_deref().unwrap_or(""));
                    }
                    div.field {
                        label for="segment-key" { "Write key" }
                        input #segment-key type="password" name="segment_write_key" autocomplete="off"
                            placeholder=(if workspace.segment_write_key_set { "set — type a new one to replace it" } else { "" });
                    }
                    div { button.button type="submit" { "Save" } }
                }
            }
            section.card #digest aria-labelledby="digest-title" {
                h2 #digest-title { "Daily digest" }
                (message_for(Form::Digest))
                p.small.muted { "Who is due a touch and who is losing touch, once a day at this time (" (workspace.time_zone) ")." }
                form.stack method="post" action="/nudges/digest" {
                    (layout::csrf(signed))
                    div.field {
                        label for="digest-time" { "Time" }
                        input #digest-time type="time" name="digest_time" value=(workspace.digest.time.as_deref().unwrap_or(""));
                    }
                    div.field {
                        label for="digest-webhook" { "Webhook (Slack or any)" }
                        input #digest-webhook type="url" name="digest_webhook_url" value=(workspace.digest.webhook_url.as_deref().unwrap_or(""));
                    }
                    div.field {
                        label for="digest-email" { "Email" }
                        input #digest-email type="email" name="digest_email" value=(workspace.digest.email.as_deref().unwrap_or(""));
                    }
                    div { button.button type="submit" { "Save digest" } }
                }
            }
            section.card #deliveries aria-labelledby="deliveries-title" {
                h2 #deliveries-title { "Deliveries" }
                @if deliveries.is_empty() {
                    p.muted { "Nothing sent yet." }
                } @else {
                    div.table-wrap {
                        table.table {
                            thead { tr { th scope="col" { "To" } th scope="col" { "Status" } th.hide-sm scope="col" { "Queued" } th scope="col" { "" } } }
                            tbody {
                                @for delivery in &deliveries {
                                    tr {
                                        td { (delivery.kind) span.sub { (delivery.target) } }
                                        td {
                                            span.tag.tag-in[delivery.status == "sent"].tag-out[delivery.status == "failed"] { (delivery.status) }
                                            @if let Some(error) = &delivery.last_error { span.sub { (error) } }
                                        }
                                        td.hide-sm { (layout::time_tag(delivery.created_at, &tz)) }
                                        td {
                                            @if delivery.status == "failed" {
                                                form.inline method="post" action={ "/nudges/deliveries/" (delivery.id) "/retry" } {
                                                    (layout::csrf(signed))
                                                    button.button.button-small type="submit" { "Retry" }
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
        }
    };
    Ok(layout::page_with_status(signed, Nav::Nudges, "Nudges", status, body))
}

/// The new-rule form.
#[derive(Debug, Default, Deserialize)]
pub struct RuleForm {
    rule: Option<String>,
}

/// `POST /nudges/rules`.
pub async fn create_rule(State(state): State<AppState>, Posted(signed, form): Posted<RuleForm>) -> WebResult<Response> {
    let text = form.rule.unwrap_or_default();
    let spec = serde_json::from_str::<RuleSpec>(&text).map_err(|e| e.to_string()).and_then(|spec| {
        check_rule(state.outbound.policy(), &spec).map_err(|error| error.body.message)?;
        Ok(spec)
    });
    let spec = match spec {
        Ok(spec) => {
            check_templates(&state, signed.workspace.id, &spec).await.map(|()| spec).map_err(|e| e.body.message)
        }
        Err(message) => Err(message),
    };
    match spec {
        Ok(spec) => {
            state.store.create_rule(signed.workspace.id, spec).await?;
            Ok(Redirect::to("/nudges#rules").into_response())
        }
        Err(message) => {
            let notice = Notice {
                message: Some((Form::Rule, AlertKind::Error, format!("this rule cannot be used: {message}"))),
                draft: Some(text),
            };
            render(&state, &signed, notice, StatusCode::BAD_REQUEST).await
        }
    }
}

/// `POST /nudges/rules/{id}/toggle`.
pub async fn toggle_rule(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Posted(signed, _): Posted<Empty>,
) -> WebResult<Response> {
    let rule = state
        .store
        .rule(signed.workspace.id, id)
        .await?
        .ok_or_else(|| WebError::not_found(format!("there is no rule {id}")))?;
    let mut spec = rule.spec;
    spec.enabled = !spec.enabled;
    state.store.update_rule(signed.workspace.id, id, spec).await?;
    Ok(Redirect::to("/nudges#rules").into_response())
}

/// `POST /nudges/rules/{id}/delete`.
pub async fn delete_rule(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Posted(signed, _): Posted<Empty>,
) -> WebResult<Response> {
    if !state.store.delete_rule(signed.workspace.id, id).await? {
        return Err(WebError::not_found(format!("there is no rule {id}")));
    }
    Ok(Redirect::to("/nudges#rules").into_response())
}

/// `POST /nudges/deliveries/{id}/retry`.
pub async fn retry_delivery(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Posted(signed, _): Posted<Empty>,
) -> WebResult<Response> {
    if !state.store.retry_delivery(signed.workspace.id, id, state.clock.now()).await? {
        return Err(WebError::not_found(format!("there is no failed delivery {id}")));
    }
    Ok(Redirect::to("/nudges#deliveries").into_response())
}

/// The outbound Segment form.
#[derive(Debug, Default, Deserialize)]
pub struct SegmentForm {
    segment_host: Option<String>,
    segment_write_key: Option<String>,
}

/// `POST /nudges/segment`: an empty key keeps the one set; an empty host turns sending off.
pub async fn segment(State(state): State<AppState>, Posted(signed, form): Posted<SegmentForm>) -> WebResult<Response> {
    let key = form.segment_write_key.filter(|k| !k.trim().is_empty()).map(Some);
    let change =
        WorkspaceChange { segment_host: Some(form.segment_host), segment_write_key: key, ..WorkspaceChange::default() };
    save(&state, signed, change, Form::Segment, "saved.").await
}

/// The digest form.
#[derive(Debug, Default, Deserialize)]
pub struct DigestForm {
    digest_time: Option<String>,
    digest_webhook_url: Option<String>,
    digest_email: Option<String>,
}

/// `POST /nudges/digest`: an empty time turns the digest off.
pub async fn digest(State(state): State<AppState>, Posted(signed, form): Posted<DigestForm>) -> WebResult<Response> {
    let change = WorkspaceChange {
        digest_time: Some(form.digest_time),
        digest_webhook_url: Some(form.digest_webhook_url),
        digest_email: Some(form.digest_email),
        ..WorkspaceChange::default()
    };
    save(&state, signed, change, Form::Digest, "saved.").await
}

async fn save(
    state: &AppState,
    mut signed: Signed,
    change: WorkspaceChange,
    form: Form,
    done: &str,
) -> WebResult<Response> {
    signed.workspace = match save_settings(state, &signed.workspace, change).await? {
        Ok(updated) => updated,
        Err(message) => {
            let notice = Notice { message: Some((form, AlertKind::Error, message)), ..Notice::default() };
            return render(state, &signed, notice, StatusCode::BAD_REQUEST).await;
        }
    };
    let notice = Notice { message: Some((form, AlertKind::Success, done.to_owned())), ..Notice::default() };
    render(state, &signed, notice, StatusCode::OK).await
}
