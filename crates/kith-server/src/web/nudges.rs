//! Nudges: rules (when / unless / then), outbound Segment, the daily digest, and what was
//! delivered. Rules are built with a form (`rule_form.rs`); the JSON the API takes stays
//! available beside it, with a worked example.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use kith_core::rules::{Action, RuleSpec, Trigger};
use kith_store::{Rule, Template};
use maud::{html, Markup};
use serde::Deserialize;

use super::layout::{self, AlertKind, Nav};
use super::rule_form::{self, Draft};
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
    Segment,
    Digest,
}

#[derive(Default)]
struct Notice {
    message: Option<(Form, AlertKind, String)>,
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

fn describe_then(action: &Action, templates: &[Template]) -> String {
    match action {
        Action::Message { template } => match templates.iter().find(|known| known.id == *template) {
            Some(known) => format!("send “{}” to the contact", known.spec.name),
            None => format!("send template {template} (deleted) to the contact"),
        },
        Action::Webhook { url, .. } => format!("post to {}", url.split('/').take(3).collect::<Vec<_>>().join("/")),
        Action::Email { to, .. } => format!("email {to}"),
        Action::EmailOwner { .. } => "email the account's owner".to_owned(),
        Action::Segment { event } => format!("send “{}” to Segment", event.as_deref().unwrap_or("Nudge Sent")),
    }
}

fn rule_row(rule: &Rule, signed: &Signed, tz: &jiff::tz::TimeZone, templates: &[Template]) -> Markup {
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
                    ": " (spec.then.iter().map(|action| describe_then(action, templates)).collect::<Vec<_>>().join(", ")) "."
                }
            }
            td.hide-sm { (layout::time_tag(rule.updated_at, tz)) }
            td {
                @if spec.enabled { span.tag.tag-in { "on" } } @else { span.tag { "off" } }
            }
            td {
                a.button.button-small href={ "/nudges/rules/" (rule.id) } aria-label={ "Edit " (spec.name) } { "Edit" }
                " "
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
    let templates = state.store.templates(workspace.id).await?;
    let deliveries = state.store.deliveries(workspace.id, None, None, DELIVERIES_SHOWN).await?;
    let message_for = |form: Form| -> Markup {
        html! {
            @if let Some((_, kind, message)) = notice.message.as_ref().filter(|(f, _, _)| *f == form) {
                (layout::alert(*kind, message))
            }
        }
    };
    let body = html! {
        (layout::page_header("Nudges", Some(html! { "Act when a contact does something — or stops doing it." }),
            Some(html! { a.button.button-primary href="/nudges/rules/new" { "New rule" } })))
        div.settings {
            section.card #rules aria-labelledby="rules-title" {
                h2 #rules-title { "Rules" }
                @if rules.is_empty() {
                    p.muted { "No rule yet. A rule acts when a contact does something — or stops doing it: it can message the contact, alert the team, call a webhook or tell Segment." }
                } @else {
                    div.table-wrap {
                        table.table {
                            thead { tr { th scope="col" { "Rule" } th.hide-sm scope="col" { "Changed" } th scope="col" { "State" } th scope="col" { "" } } }
                            tbody { @for rule in &rules { (rule_row(rule, signed, &tz, &templates)) } }
                        }
                    }
                }
                p { a.button.button-primary href="/nudges/rules/new" { "New rule" } }
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

/// `GET /nudges/rules/new`: the builder, empty.
pub async fn new_rule(State(state): State<AppState>, signed: Signed) -> WebResult<Response> {
    let page = Builder {
        id: None,
        draft: Draft::new_rule(),
        errors: Vec::new(),
        json: EXAMPLE_RULE.to_owned(),
        notice: None,
        json_first: false,
    };
    builder_page(&state, &signed, page, StatusCode::OK).await
}

/// `GET /nudges/rules/{id}`: the builder, filled with the rule.
pub async fn edit_rule(State(state): State<AppState>, signed: Signed, Path(id): Path<i64>) -> WebResult<Response> {
    let rule = find_rule(&state, &signed, id).await?;
    let (draft, whole) = Draft::of(&rule.spec);
    let notice = (!whole).then(|| {
        "this rule has two actions of one kind, which the form cannot show: change it as JSON, under Advanced."
            .to_owned()
    });
    let json = serde_json::to_string_pretty(&rule.spec).unwrap_or_default();
    let page = Builder { id: Some(id), draft, errors: Vec::new(), json, json_first: notice.is_some(), notice };
    builder_page(&state, &signed, page, StatusCode::OK).await
}

/// `POST /nudges/rules`: creates a rule from the builder, or from its JSON.
pub async fn create_rule(
    State(state): State<AppState>,
    Posted(signed, fields): Posted<Vec<(String, String)>>,
) -> WebResult<Response> {
    save_rule(&state, &signed, None, Draft::from_fields(fields)).await
}

/// `POST /nudges/rules/{id}`: replaces a rule from the builder, or from its JSON.
pub async fn update_rule(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Posted(signed, fields): Posted<Vec<(String, String)>>,
) -> WebResult<Response> {
    let rule = find_rule(&state, &signed, id).await?;
    save_rule(&state, &signed, Some(rule), Draft::from_fields(fields)).await
}

/// A rule of the signed-in workspace, else a 404 page.
pub(super) async fn find_rule(state: &AppState, signed: &Signed, id: i64) -> WebResult<Rule> {
    state
        .store
        .rule(signed.workspace.id, id)
        .await?
        .ok_or_else(|| WebError::not_found(format!("there is no rule {id}")))
}

/// The builder page's state.
struct Builder {
    id: Option<i64>,
    draft: Draft,
    errors: rule_form::Errors,
    /// The advanced form's text.
    json: String,
    /// A refusal of the whole rule, or why the form cannot show it all.
    notice: Option<String>,
    /// Whether the JSON is what to look at first.
    json_first: bool,
}

/// Saves the rule the builder or its JSON describes, over `current` if given; a refusal shows
/// the builder again with what to change.
async fn save_rule(state: &AppState, signed: &Signed, current: Option<Rule>, draft: Draft) -> WebResult<Response> {
    let workspace = signed.workspace.id;
    let from_json = draft.json().map(str::to_owned);
    let spec = match &from_json {
        Some(text) => serde_json::from_str::<RuleSpec>(text).map_err(|error| (Vec::new(), error.to_string())),
        None => rule_form::read(state, workspace, &draft).await.map_err(|errors| (errors, String::new())),
    };
    // The checks every rule passes, whichever way it was written.
    let spec = match spec {
        Ok(spec) => match check_rule(state.outbound.policy(), &spec) {
            Ok(()) => {
                check_templates(state, workspace, &spec).await.map(|()| spec).map_err(|e| (Vec::new(), e.body.message))
            }
            Err(error) => Err((Vec::new(), error.body.message)),
        },
        Err(refused) => Err(refused),
    };
    let (errors, message) = match spec {
        Ok(spec) => {
            match &current {
                Some(rule) => {
                    state.store.update_rule(workspace, rule.id, spec).await?;
                }
                None => {
                    state.store.create_rule(workspace, spec).await?;
                }
            }
            return Ok(Redirect::to("/nudges#rules").into_response());
        }
        Err(refused) => refused,
    };
    let notice = if errors.is_empty() {
        Some(format!("this rule cannot be used: {message}"))
    } else {
        Some("this rule cannot be used yet: see the fields marked below.".to_owned())
    };
    // What was not sent is shown as stored: the rule's JSON and form, or the example and an
    // empty form.
    let stored_json = || match &current {
        Some(rule) => serde_json::to_string_pretty(&rule.spec).unwrap_or_default(),
        None => EXAMPLE_RULE.to_owned(),
    };
    let json_first = from_json.is_some();
    let (json, draft) = match from_json {
        Some(json) => (json, current.as_ref().map_or_else(Draft::new_rule, |rule| Draft::of(&rule.spec).0)),
        None => (stored_json(), draft),
    };
    let page = Builder { id: current.map(|rule| rule.id), draft, errors, json, notice, json_first };
    builder_page(state, signed, page, StatusCode::BAD_REQUEST).await
}

async fn builder_page(state: &AppState, signed: &Signed, page: Builder, status: StatusCode) -> WebResult<Response> {
    let templates = state.store.templates(signed.workspace.id).await?;
    let (title, action) = match page.id {
        Some(id) => ("Edit rule", format!("/nudges/rules/{id}")),
        None => ("New rule", "/nudges/rules".to_owned()),
    };
    // The JSON is open when it was refused, or when it holds what the form cannot show.
    let advanced_open = page.json_first;
    let body = html! {
        p.crumbs { a href="/nudges" { "← Nudges" } }
        (layout::page_header(title, Some(html! { "When a contact does something (or something happens to it), unless it does something else in time, then act." }),
            page.id.map(|id| html! { a.button href=(format!("/nudges/rules/{id}/backtest")) { "Backtest" } })))
        @if let Some(notice) = &page.notice { (layout::alert(AlertKind::Error, notice)) }
        (rule_form::builder(signed, &action, &page.draft, &page.errors, &templates, &page.json, advanced_open))
    };
    Ok(layout::page_with_status(signed, Nav::Nudges, title, status, body))
}

/// `POST /nudges/rules/{id}/toggle`.
pub async fn toggle_rule(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Posted(signed, _): Posted<Empty>,
) -> WebResult<Response> {
    let rule = find_rule(&state, &signed, id).await?;
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
            let notice = Notice { message: Some((form, AlertKind::Error, message)) };
            return render(state, &signed, notice, StatusCode::BAD_REQUEST).await;
        }
    };
    let notice = Notice { message: Some((form, AlertKind::Success, done.to_owned())) };
    render(state, &signed, notice, StatusCode::OK).await
}
