//! Journeys: the list, the builder (a form with the steps top to bottom; adding, removing and
//! moving a step sends the form back to be shown again, so it works without JavaScript and
//! nothing is saved until "Save"), each step's counts, the contacts at a step, pause and resume.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use kith_core::closeness::Bucket;
use kith_core::journeys::{Condition, EntryPolicy, ExitWhen, JourneySpec, Next, Step, StepKind};
use kith_core::rules::Trigger;
use maud::{html, Markup};
use serde_json::{Map, Value};

use super::layout::{self, AlertKind, Nav};
use super::session::{Empty, Posted, Signed};
use super::{WebError, WebResult};
use crate::service::journeys;
use crate::AppState;

/// The step kinds a person picks from, with their labels.
const KINDS: [(&str, &str); 9] = [
    ("wait", "Wait"),
    ("wait_until", "Wait until an event"),
    ("branch", "Branch"),
    ("message", "Send a message"),
    ("webhook", "Post a webhook"),
    ("segment", "Segment track call"),
    ("note", "Add a note"),
    ("cadence", "Set the cadence"),
    ("exit", "Exit"),
];

/// The builder's form as strings, so a draft that does not hold together yet can be shown
/// again exactly as typed.
#[derive(Debug, Clone, Default)]
struct Draft {
    id: Option<i64>,
    fields: HashMap<String, String>,
    steps: Vec<HashMap<String, String>>,
}

impl Draft {
    fn get(&self, key: &str) -> &str {
        self.fields.get(key).map_or("", String::as_str)
    }

    fn from_form(form: &HashMap<String, String>) -> Draft {
        let mut draft = Draft { id: form.get("id").and_then(|id| id.parse().ok()), ..Draft::default() };
        let count: usize = form.get("steps").and_then(|n| n.parse().ok()).unwrap_or(0).min(50);
        for (key, value) in form {
            if !key.contains('.') {
                draft.fields.insert(key.clone(), value.clone());
            }
        }
        for i in 0..count {
            let prefix = format!("s{i}.");
            let step: HashMap<String, String> = form
                .iter()
                .filter_map(|(key, value)| key.strip_prefix(&prefix).map(|field| (field.to_owned(), value.clone())))
                .collect();
            draft.steps.push(step);
        }
        draft
    }

    fn from_spec(id: Option<i64>, spec: &JourneySpec) -> Draft {
        let mut fields = HashMap::new();
        let mut set = |key: &str, value: String| {
            fields.insert(key.to_owned(), value);
        };
        set("name", spec.name.clone());
        match &spec.when {
            Trigger::Event { name, conditions } => {
                set("trigger", "event".into());
                set("trigger_name", name.clone());
                if let Some((key, value)) = conditions.iter().next() {
                    set("trigger_key", key.clone());
                    set("trigger_value", value.as_str().map_or_else(|| value.to_string(), str::to_owned));
                }
            }
            Trigger::AudienceEntered { audience } => {
                set("trigger", "audience_entered".into());
                set("trigger_name", audience.clone());
            }
            Trigger::AudienceExited { audience } => {
                set("trigger", "audience_exited".into());
                set("trigger_name", audience.clone());
            }
            Trigger::BecomesDue {} => set("trigger", "becomes_due".into()),
            Trigger::BucketChanged { to, .. } => {
                set("trigger", "bucket_changed".into());
                set("trigger_name", to.as_str().into());
            }
            // Refused when a journey is saved: account health starts rules, not journeys.
            Trigger::HealthBandChanged { .. } | Trigger::HealthDropped { .. } => {}
        }
        match spec.entry {
            EntryPolicy::Once => set("entry", "once".into()),
            EntryPolicy::EveryTime => set("entry", "every_time".into()),
            EntryPolicy::OncePerDays(days) => {
                set("entry", "once_per_days".into());
                set("entry_days", days.to_string());
            }
        }
        if let Some(exit) = spec.exit_when.first() {
            set("exit_event", exit.event.clone());
            set("exit_same", exit.same.clone().unwrap_or_default());
        }
        let steps = spec.steps.iter().map(step_fields).collect();
        Draft { id, fields, steps }
    }

    /// The journey the draft describes, or what to fix.
    fn to_spec(&self, enabled: bool) -> Result<JourneySpec, String> {
        let name = self.get("trigger_name").trim().to_owned();
        let when = match self.get("trigger") {
            "event" => {
                let mut conditions = Map::new();
                let key = self.get("trigger_key").trim();
                if !key.is_empty() {
                    conditions.insert(key.to_owned(), Value::String(self.get("trigger_value").to_owned()));
                }
                Trigger::Event { name, conditions }
            }
            "audience_entered" => Trigger::AudienceEntered { audience: name },
            "audience_exited" => Trigger::AudienceExited { audience: name },
            "becomes_due" => Trigger::BecomesDue {},
            "bucket_changed" => Trigger::BucketChanged {
                to: Bucket::parse(&name).ok_or("the bucket is close, warm, cooling or cold")?,
                from: None,
            },
            _ => return Err("choose what starts the journey".into()),
        };
        let entry = match self.get("entry") {
            "every_time" => EntryPolicy::EveryTime,
            "once_per_days" => EntryPolicy::OncePerDays(number(self.get("entry_days"), "the days between entries")?),
            _ => EntryPolicy::Once,
        };
        let exit_event = self.get("exit_event").trim();
        let exit_when = if exit_event.is_empty() {
            Vec::new()
        } else {
            vec![ExitWhen { event: exit_event.to_owned(), same: optional(self.get("exit_same")) }]
        };
        let steps = self.steps.iter().enumerate().map(|(i, step)| read_step(i, step)).collect::<Result<_, _>>()?;
        Ok(JourneySpec { name: self.get("name").trim().to_owned(), enabled, when, entry, steps, exit_when })
    }
}

fn optional(value: &str) -> Option<String> {
    Some(value.trim().to_owned()).filter(|value| !value.is_empty())
}

fn number(value: &str, what: &str) -> Result<i64, String> {
    value.trim().parse().map_err(|_| format!("{what} is a whole number"))
}

fn next_text(next: Next) -> String {
    match next {
        Next::Continue => "continue".into(),
        Next::Exit => "exit".into(),
        Next::Step(id) => format!("step:{id}"),
    }
}

fn read_next(value: &str, default: Next) -> Next {
    match value {
        "continue" => Next::Continue,
        "exit" => Next::Exit,
        other => other.strip_prefix("step:").and_then(|id| id.parse().ok()).map_or(default, Next::Step),
    }
}

fn step_fields(step: &Step) -> HashMap<String, String> {
    let mut fields = HashMap::new();
    let mut set = |key: &str, value: String| {
        fields.insert(key.to_owned(), value);
    };
    set("id", step.id.to_string());
    set("kind", step.kind.kind().to_owned());
    match &step.kind {
        StepKind::Wait { hours } => set("hours", hours.to_string()),
        StepKind::WaitUntil { event, same, hours, then, timeout } => {
            set("event", event.clone());
            set("same", same.clone().unwrap_or_default());
            set("hours", hours.to_string());
            set("then", next_text(*then));
            set("timeout", next_text(*timeout));
        }
        StepKind::Branch { condition, otherwise } => {
            let (test, key, equals) = match condition {
                Condition::Trait { key, equals } => ("trait", key, equals.as_ref()),
                Condition::Audience { key } => ("audience", key, None),
                Condition::Property { key, equals } => ("property", key, equals.as_ref()),
            };
            set("test", test.into());
            set("key", key.clone());
            set("equals", equals.map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)).unwrap_or_default());
            set("otherwise", next_text(*otherwise));
        }
        StepKind::Message { template } => set("template", template.to_string()),
        StepKind::Webhook { url, text } => {
            set("url", url.clone());
            set("text", text.clone().unwrap_or_default());
        }
        StepKind::Segment { event } => set("event", event.clone()),
        StepKind::Note { text } => set("text", text.clone()),
        StepKind::Cadence { days } => set("days", days.map(|d| d.to_string()).unwrap_or_default()),
        StepKind::Exit {} => {}
    }
    fields
}

fn read_step(index: usize, step: &HashMap<String, String>) -> Result<Step, String> {
    let get = |key: &str| step.get(key).map_or("", String::as_str);
    let n = index + 1;
    let hours = || number(get("hours"), &format!("step {n}: the hours"));
    let kind = match get("kind") {
        "wait" => StepKind::Wait { hours: hours()? },
        "wait_until" => StepKind::WaitUntil {
            event: get("event").trim().to_owned(),
            same: optional(get("same")),
            hours: hours()?,
            then: read_next(get("then"), Next::Continue),
            timeout: read_next(get("timeout"), Next::Continue),
        },
        "branch" => {
            let key = get("key").trim().to_owned();
            let equals = optional(get("equals")).map(Value::String);
            let condition = match get("test") {
                "audience" => Condition::Audience { key },
                "property" => Condition::Property { key, equals },
                _ => Condition::Trait { key, equals },
            };
            StepKind::Branch { condition, otherwise: read_next(get("otherwise"), Next::Exit) }
        }
        "message" => StepKind::Message { template: number(get("template"), &format!("step {n}: the template"))? },
        "webhook" => StepKind::Webhook { url: get("url").trim().to_owned(), text: optional(get("text")) },
        "segment" => StepKind::Segment { event: get("event").trim().to_owned() },
        "note" => StepKind::Note { text: get("text").trim().to_owned() },
        "cadence" => StepKind::Cadence {
            days: optional(get("days")).map(|d| number(&d, &format!("step {n}: the days"))).transpose()?,
        },
        "exit" => StepKind::Exit {},
        _ => return Err(format!("step {n}: choose what it does")),
    };
    Ok(Step { id: get("id").parse().unwrap_or(0), kind })
}

/// `GET /journeys`.
pub async fn list(State(state): State<AppState>, signed: Signed) -> WebResult<Response> {
    let workspace = signed.workspace.id;
    let mut rows = Vec::new();
    for journey in state.store.journeys(workspace).await? {
        let counts = state.store.journey_counts(workspace, journey.id).await?;
        rows.push((journey, counts));
    }
    let body = html! {
        (layout::page_header(
            "Journeys",
            Some(html! { "Several steps over days: waits, waits for what a contact does, branches and messages." }),
            Some(html! { a.button.button-primary href="/journeys/new" { "New journey" } }),
        ))
        section.card {
            @if rows.is_empty() {
                p.muted { "No journey yet." }
            } @else {
                div.table-wrap {
                    table.table {
                        thead { tr { th scope="col" { "Journey" } th scope="col" { "In it now" } th scope="col" { "Entered" } th scope="col" { "State" } th scope="col" { "" } } }
                        tbody {
                            @for (journey, counts) in &rows {
                                tr {
                                    td { a href={ "/journeys/" (journey.id) } { (journey.spec.name) } }
                                    td { (counts.active) }
                                    td { (counts.entered) }
                                    td { @if journey.spec.enabled { span.tag.tag-in { "running" } } @else { span.tag { "paused" } } }
                                    td { (toggle_form(&signed, journey.id, journey.spec.enabled, &journey.spec.name)) }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page(&signed, Nav::Journeys, "Journeys", body))
}

fn toggle_form(signed: &Signed, id: i64, enabled: bool, name: &str) -> Markup {
    html! {
        form.inline method="post" action={ "/journeys/" (id) "/toggle" } {
            (layout::csrf(signed))
            button.button.button-small type="submit" aria-label={ (if enabled { "Pause " } else { "Resume " }) (name) } {
                @if enabled { "Pause" } @else { "Resume" }
            }
        }
    }
}

/// `GET /journeys/new`.
pub async fn new(State(state): State<AppState>, signed: Signed) -> WebResult<Response> {
    let mut draft = Draft::default();
    draft.fields.insert("trigger".into(), "event".into());
    draft.steps.push(HashMap::from([("kind".to_owned(), "wait".to_owned()), ("hours".to_owned(), "24".to_owned())]));
    builder(&state, &signed, &draft, None, StatusCode::OK).await
}

/// `GET /journeys/{id}`: the builder of a saved journey, with its counts.
pub async fn show(State(state): State<AppState>, Path(id): Path<i64>, signed: Signed) -> WebResult<Response> {
    let journey = journeys::find(&state, signed.workspace.id, id).await.map_err(|_| not_found(id))?;
    builder(&state, &signed, &Draft::from_spec(Some(id), &journey.spec), None, StatusCode::OK).await
}

fn not_found(id: i64) -> WebError {
    WebError::not_found(format!("there is no journey {id}"))
}

fn field(label: &str, name: &str, value: &str, kind: &str) -> Markup {
    html! {
        div.field {
            label for=(name) { (label) }
            input id=(name) type=(kind) name=(name) value=(value);
        }
    }
}

fn select(label: &str, name: &str, value: &str, options: &[(String, String)]) -> Markup {
    html! {
        div.field {
            label for=(name) { (label) }
            select id=(name) name=(name) {
                @for (option, text) in options {
                    option value=(option) selected[option == value] { (text) }
                }
            }
        }
    }
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect()
}

async fn builder(
    state: &AppState,
    signed: &Signed,
    draft: &Draft,
    error: Option<&str>,
    status: StatusCode,
) -> WebResult<Response> {
    let workspace = signed.workspace.id;
    let saved = match draft.id {
        Some(id) => Some(journeys::find(state, workspace, id).await.map_err(|_| not_found(id))?),
        None => None,
    };
    let counts = match &saved {
        Some(journey) => {
            let counts = state.store.journey_counts(workspace, journey.id).await?;
            Some((journeys::step_counts(&journey.spec, &counts), counts))
        }
        None => None,
    };
    let templates = state.store.templates(workspace).await?;
    let mut template_options = vec![(String::new(), "—".to_owned())];
    template_options.extend(templates.iter().map(|t| (t.id.to_string(), format!("{} (#{})", t.spec.name, t.id))));
    let targets: Vec<(String, String)> = {
        let mut targets = pairs(&[("continue", "the next step"), ("exit", "leave the journey")]);
        for (i, step) in draft.steps.iter().enumerate() {
            if let Some(id) = step.get("id").filter(|id| !id.is_empty()) {
                targets.push((format!("step:{id}"), format!("step {}", i + 1)));
            }
        }
        targets
    };
    let title = saved.as_ref().map_or("New journey".to_owned(), |j| j.spec.name.clone());
    let action = "/journeys/builder";
    let body = html! {
        p.crumbs { a href="/journeys" { "← Journeys" } }
        (layout::page_header(&title, None, saved.as_ref().map(|j| toggle_form(signed, j.id, j.spec.enabled, &j.spec.name))))
        @if let Some((_, counts)) = &counts {
            p.muted #journey-counts {
                (counts.entered) " entered · " (counts.active) " in it now · " (counts.completed) " completed · " (counts.exited) " left early"
            }
        }
        @if let Some(error) = error { (layout::alert(AlertKind::Error, error)) }
        form.stack #journey-builder method="post" action=(action) {
            (layout::csrf(signed))
            @if let Some(id) = draft.id { input type="hidden" name="id" value=(id); }
            input type="hidden" name="steps" value=(draft.steps.len());
            section.card {
                h2 { "Entry" }
                (field("Name", "name", draft.get("name"), "text"))
                div.row {
                    (select("Starts when a contact", "trigger", draft.get("trigger"), &pairs(&[
                        ("event", "does an event"), ("audience_entered", "enters an audience"),
                        ("audience_exited", "exits an audience"), ("becomes_due", "becomes due"),
                        ("bucket_changed", "moves into a closeness bucket")])))
                    (field("Event, audience or bucket", "trigger_name", draft.get("trigger_name"), "text"))
                }
                div.row {
                    (field("Only if the property", "trigger_key", draft.get("trigger_key"), "text"))
                    (field("equals", "trigger_value", draft.get("trigger_value"), "text"))
                }
                div.row {
                    (select("Entry", "entry", draft.get("entry"), &pairs(&[
                        ("once", "once per contact"), ("once_per_days", "once every N days"), ("every_time", "every time")])))
                    (field("N days", "entry_days", draft.get("entry_days"), "number"))
                }
                div.row {
                    (field("Leave the journey when the event", "exit_event", draft.get("exit_event"), "text"))
                    (field("with the same property", "exit_same", draft.get("exit_same"), "text"))
                }
            }
            section.card {
                h2 { "Steps" }
                ol.steps {
                    @for (i, step) in draft.steps.iter().enumerate() {
                        (step_row(i, step, draft.steps.len(), &template_options, &targets, counts.as_ref().map(|(c, _)| c.as_slice()), draft.id))
                    }
                }
                div.row {
                    (select("Add a step", "add_kind", "wait", &KINDS.iter().map(|(k, l)| ((*k).to_owned(), (*l).to_owned())).collect::<Vec<_>>()))
                    div { button.button type="submit" name="op" value="add" { "Add step" } }
                }
            }
            div { button.button.button-primary type="submit" name="op" value="save" { "Save journey" } }
        }
    };
    Ok(layout::page_with_status(signed, Nav::Journeys, &title, status, body))
}

fn step_row(
    i: usize,
    step: &HashMap<String, String>,
    total: usize,
    templates: &[(String, String)],
    targets: &[(String, String)],
    counts: Option<&[kith_store::StepCount]>,
    journey: Option<i64>,
) -> Markup {
    let get = |key: &str| step.get(key).map_or("", String::as_str);
    let name = |key: &str| format!("s{i}.{key}");
    let kind = get("kind");
    let label = KINDS.iter().find(|(k, _)| *k == kind).map_or(kind, |(_, label)| label);
    let id: Option<u32> = get("id").parse().ok();
    let count = id.and_then(|id| counts.and_then(|counts| counts.iter().find(|c| c.step == id)));
    html! {
        li.card.step data-kind=(kind) {
            input type="hidden" name=(name("id")) value=(get("id"));
            input type="hidden" name=(name("kind")) value=(kind);
            p {
                strong { "Step " (i + 1) ": " (label) }
                @if let (Some(count), Some(journey)) = (count, journey) {
                    " · "
                    a.step-count href={ "/journeys/" (journey) "/steps/" (count.step) } {
                        (count.waiting) " waiting, " (count.done) " done"
                    }
                }
            }
            @match kind {
                "wait" => { (field("Hours", &name("hours"), get("hours"), "number")) }
                "wait_until" => {
                    div.row {
                        (field("Until the event", &name("event"), get("event"), "text"))
                        (field("with the same property as the entry event", &name("same"), get("same"), "text"))
                        (field("for at most (hours)", &name("hours"), get("hours"), "number"))
                    }
                    div.row {
                        (select("When it happens, go to", &name("then"), get("then"), targets))
                        (select("If not, go to", &name("timeout"), get("timeout"), targets))
                    }
                }
                "branch" => {
                    div.row {
                        (select("If the contact's", &name("test"), get("test"), &pairs(&[
                            ("trait", "trait"), ("audience", "audience (is a member)"), ("property", "entry event property")])))
                        (field("named", &name("key"), get("key"), "text"))
                        (field("equals (empty: is set)", &name("equals"), get("equals"), "text"))
                    }
                    (select("Otherwise go to", &name("otherwise"), get("otherwise"), targets))
                }
                "message" => { (select("Template", &name("template"), get("template"), templates)) }
                "webhook" => {
                    (field("URL", &name("url"), get("url"), "url"))
                    (field("Text", &name("text"), get("text"), "text"))
                }
                "segment" => { (field("Track event", &name("event"), get("event"), "text")) }
                "note" => { (field("Note", &name("text"), get("text"), "text")) }
                "cadence" => { (field("Cadence in days (empty clears it)", &name("days"), get("days"), "number")) }
                _ => {}
            }
            div.row {
                @if i > 0 { button.button.button-small type="submit" name="op" value={ "up:" (i) } aria-label={ "Move step " (i + 1) " up" } { "↑ Up" } }
                @if i + 1 < total { button.button.button-small type="submit" name="op" value={ "down:" (i) } aria-label={ "Move step " (i + 1) " down" } { "↓ Down" } }
                button.button.button-small.button-danger type="submit" name="op" value={ "remove:" (i) } aria-label={ "Remove step " (i + 1) } { "Remove" }
            }
        }
    }
}

/// `POST /journeys/builder`: add, remove or move a step and show the form again, or save.
pub async fn post_builder(
    State(state): State<AppState>,
    Posted(signed, form): Posted<HashMap<String, String>>,
) -> WebResult<Response> {
    let mut draft = Draft::from_form(&form);
    let op = form.get("op").map_or("save", String::as_str);
    let index = |prefix: &str| op.strip_prefix(prefix).and_then(|i| i.parse::<usize>().ok());
    if op == "add" {
        let kind = form.get("add_kind").cloned().unwrap_or_else(|| "wait".into());
        draft.steps.push(HashMap::from([("kind".to_owned(), kind)]));
    } else if let Some(i) = index("remove:").filter(|i| *i < draft.steps.len()) {
        draft.steps.remove(i);
    } else if let Some(i) = index("up:").filter(|i| *i > 0 && *i < draft.steps.len()) {
        draft.steps.swap(i - 1, i);
    } else if let Some(i) = index("down:").filter(|i| i + 1 < draft.steps.len()) {
        draft.steps.swap(i, i + 1);
    } else {
        return save(&state, &signed, &draft).await;
    }
    builder(&state, &signed, &draft, None, StatusCode::OK).await
}

async fn save(state: &AppState, signed: &Signed, draft: &Draft) -> WebResult<Response> {
    let workspace = signed.workspace.id;
    let enabled = match draft.id {
        Some(id) => journeys::find(state, workspace, id).await.map_err(|_| not_found(id))?.spec.enabled,
        None => true,
    };
    let spec = match draft.to_spec(enabled) {
        Ok(spec) => spec,
        Err(message) => return builder(state, signed, draft, Some(&message), StatusCode::BAD_REQUEST).await,
    };
    let saved = match draft.id {
        Some(id) => journeys::update(state, workspace, id, spec).await,
        None => journeys::create(state, workspace, spec).await,
    };
    match saved {
        Ok(journey) => Ok(Redirect::to(&format!("/journeys/{}", journey.id)).into_response()),
        Err(error) if error.status.is_client_error() => {
            let message = format!("this journey cannot be used: {}", error.body.message);
            builder(state, signed, draft, Some(&message), StatusCode::BAD_REQUEST).await
        }
        Err(error) => Err(error.into()),
    }
}

/// `POST /journeys/{id}/toggle`: pause or resume.
pub async fn toggle(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Posted(signed, _): Posted<Empty>,
) -> WebResult<Response> {
    let journey = journeys::find(&state, signed.workspace.id, id).await.map_err(|_| not_found(id))?;
    journeys::set_enabled(&state, signed.workspace.id, id, !journey.spec.enabled).await?;
    Ok(Redirect::to(&format!("/journeys/{id}")).into_response())
}

/// `GET /journeys/{id}/steps/{step}`: the contacts waiting at a step.
pub async fn step(
    State(state): State<AppState>,
    Path((id, step)): Path<(i64, u32)>,
    signed: Signed,
) -> WebResult<Response> {
    let journey = journeys::find(&state, signed.workspace.id, id).await.map_err(|_| not_found(id))?;
    let Some(position) = journey.spec.steps.iter().position(|s| s.id == step) else {
        return Err(WebError::not_found(format!("journey {id} has no step {step}")));
    };
    let entries = state.store.journey_step_entries(signed.workspace.id, id, step, 200).await?;
    let tz = signed.workspace.tz();
    let title = format!("{} · step {}", journey.spec.name, position + 1);
    let body = html! {
        p.crumbs { a href={ "/journeys/" (id) } { "← " (journey.spec.name) } }
        (layout::page_header(&title, Some(html! { "Contacts waiting at this step now." }), None))
        section.card {
            @if entries.is_empty() {
                p.muted { "Nobody is waiting here." }
            } @else {
                ul.step-contacts {
                    @for entry in &entries {
                        li {
                            a href={ "/contacts/" (entry.contact_id) } { (entry.email) }
                            span.sub {
                                "entered " (layout::time_tag(entry.entered_at, &tz))
                                @if let Some(due) = entry.next_due_at { " · moves on by " (layout::time_tag(due, &tz)) }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page(&signed, Nav::Journeys, &title, body))
}

/// The "Journeys" card of a contact's page: each entry with the steps passed and why.
pub async fn contact_card(state: &AppState, signed: &Signed, contact: i64) -> WebResult<Markup> {
    let entries = journeys::contact_journeys(state, signed.workspace.id, contact).await?;
    let tz = signed.workspace.tz();
    Ok(html! {
        section.card #journeys aria-labelledby="journeys-title" {
            h2 #journeys-title { "Journeys" }
            @if entries.is_empty() {
                p.muted { "In no journey." }
            } @else {
                ul.journeys {
                    @for (name, entry) in &entries {
                        li {
                            a href={ "/journeys/" (entry.journey_id) } { (name) }
                            " " span.tag.tag-in[entry.state == "active"] { (entry.state) }
                            @if let Some(reason) = &entry.reason { span.sub { (reason) } }
                            ol.small {
                                @for moved in &entry.moves {
                                    li { "Step " (moved.step) ": " (moved.why) " · " (layout::time_tag(moved.at, &tz)) }
                                }
                            }
                        }
                    }
                }
            }
        }
    })
}
