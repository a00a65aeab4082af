//! Journeys: the list, the builder (a form with the entry trigger and its property conditions,
//! the exit events and the steps top to bottom; adding, removing and moving a row sends the form
//! back to be shown again, so it works without JavaScript and nothing is saved until "Save"),
//! each step's counts, the contacts at a step, pause and resume. The form holds every journey
//! the API takes: one saved through the API comes back unchanged when saved here.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use kith_core::closeness::Bucket;
use kith_core::health::Band;
use kith_core::journeys::{Condition, EntryPolicy, ExitWhen, JourneySpec, Next, Step, StepKind};
use kith_core::rules::Trigger;
use kith_store::StepCount;
use maud::{html, Markup};
use serde_json::{Map, Value};

use super::layout::{self, AlertKind, Nav};
use super::session::{Empty, Posted, Signed};
use super::values;
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

/// What may start a journey, as the form's `trigger` values, with what people read.
const TRIGGERS: [(&str, &str); 7] = [
    ("event", "a contact does an event"),
    ("audience_entered", "a contact enters an audience"),
    ("audience_exited", "a contact exits an audience"),
    ("becomes_due", "a contact becomes due a touch"),
    ("bucket_changed", "a contact moves into a closeness bucket"),
    ("health_band_changed", "an account's health changes band"),
    ("health_dropped", "an account's health drops"),
];

/// The health bands, best first.
const BANDS: [Band; 3] = [Band::Healthy, Band::NeedsAttention, Band::AtRisk];

/// What an account health trigger means for the contacts.
const HEALTH_HINT: &str = "Each member of the account enters the journey. Its entry event has the properties account, \
                           account_name, score, band and from_band, which branches can test.";

/// One row of the form (a condition, an exit event or a step): its fields by name.
type Row = HashMap<String, String>;

/// The repeated parts of the form. A browser posts each row's fields as `{prefix}{index}.{field}`
/// and the number of rows in a hidden field.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Rows {
    Conditions,
    Exits,
    Steps,
}

impl Rows {
    const ALL: [Rows; 3] = [Rows::Conditions, Rows::Exits, Rows::Steps];

    fn prefix(self) -> &'static str {
        match self {
            Rows::Conditions => "c",
            Rows::Exits => "x",
            Rows::Steps => "s",
        }
    }

    fn count_field(self) -> &'static str {
        match self {
            Rows::Conditions => "conditions",
            Rows::Exits => "exits",
            Rows::Steps => "steps",
        }
    }
}

/// The builder's form as strings, so a draft that does not hold together yet can be shown
/// again exactly as typed.
#[derive(Debug, Clone, Default)]
struct Draft {
    id: Option<i64>,
    fields: Row,
    conditions: Vec<Row>,
    exits: Vec<Row>,
    steps: Vec<Row>,
}

fn cell<'a>(row: &'a Row, key: &str) -> &'a str {
    row.get(key).map_or("", String::as_str)
}

impl Draft {
    fn get(&self, key: &str) -> &str {
        cell(&self.fields, key)
    }

    fn set(&mut self, key: &str, value: impl Into<String>) {
        self.fields.insert(key.to_owned(), value.into());
    }

    fn rows(&self, rows: Rows) -> &Vec<Row> {
        match rows {
            Rows::Conditions => &self.conditions,
            Rows::Exits => &self.exits,
            Rows::Steps => &self.steps,
        }
    }

    fn rows_mut(&mut self, rows: Rows) -> &mut Vec<Row> {
        match rows {
            Rows::Conditions => &mut self.conditions,
            Rows::Exits => &mut self.exits,
            Rows::Steps => &mut self.steps,
        }
    }

    fn from_form(form: &HashMap<String, String>) -> Draft {
        let mut draft = Draft { id: form.get("id").and_then(|id| id.parse().ok()), ..Draft::default() };
        for rows in Rows::ALL {
            // Every row shown has fields, so a form never holds more rows than fields.
            let count = form.get(rows.count_field()).and_then(|n| n.parse().ok()).unwrap_or(0).min(form.len());
            *draft.rows_mut(rows) = vec![Row::new(); count];
        }
        for (key, value) in form {
            let Some((row, field)) = key.split_once('.') else {
                draft.fields.insert(key.clone(), value.clone());
                continue;
            };
            let place = Rows::ALL.into_iter().find_map(|rows| {
                let index = row.strip_prefix(rows.prefix())?.parse::<usize>().ok()?;
                Some((rows, index))
            });
            if let Some(row) = place.and_then(|(rows, index)| draft.rows_mut(rows).get_mut(index)) {
                row.insert(field.to_owned(), value.clone());
            }
        }
        draft
    }

    fn from_spec(id: Option<i64>, spec: &JourneySpec) -> Draft {
        let mut draft = Draft { id, ..Draft::default() };
        draft.set("name", spec.name.clone());
        match &spec.when {
            Trigger::Event { name, conditions } => {
                draft.set("trigger", "event");
                draft.set("event_name", name.clone());
                draft.conditions = conditions
                    .iter()
                    .map(|(key, value)| row(&[("key", key.clone()), ("value", values::text(value))]))
                    .collect();
            }
            Trigger::AudienceEntered { audience } => {
                draft.set("trigger", "audience_entered");
                draft.set("audience", audience.clone());
            }
            Trigger::AudienceExited { audience } => {
                draft.set("trigger", "audience_exited");
                draft.set("audience", audience.clone());
            }
            Trigger::BecomesDue {} => draft.set("trigger", "becomes_due"),
            Trigger::BucketChanged { to, from } => {
                draft.set("trigger", "bucket_changed");
                draft.set("bucket_to", to.as_str());
                draft.set("bucket_from", from.map_or("", Bucket::as_str));
            }
            Trigger::HealthBandChanged { to, from } => {
                draft.set("trigger", "health_band_changed");
                draft.set("band_to", to.map_or("", Band::as_str));
                draft.set("band_from", from.map_or("", Band::as_str));
            }
            Trigger::HealthDropped { points, within_days } => {
                draft.set("trigger", "health_dropped");
                draft.set("drop_points", points.to_string());
                draft.set("drop_days", within_days.to_string());
            }
        }
        match spec.entry {
            EntryPolicy::Once => draft.set("entry", "once"),
            EntryPolicy::EveryTime => draft.set("entry", "every_time"),
            EntryPolicy::OncePerDays(days) => {
                draft.set("entry", "once_per_days");
                draft.set("entry_days", days.to_string());
            }
        }
        draft.exits = spec
            .exit_when
            .iter()
            .map(|exit| row(&[("event", exit.event.clone()), ("same", exit.same.clone().unwrap_or_default())]))
            .collect();
        draft.steps = spec.steps.iter().map(step_fields).collect();
        draft
    }

    /// The journey the draft describes, or what to fix.
    fn to_spec(&self, enabled: bool) -> Result<JourneySpec, String> {
        let when = self.trigger()?;
        let entry = match self.get("entry") {
            "every_time" => EntryPolicy::EveryTime,
            "once_per_days" => EntryPolicy::OncePerDays(number(self.get("entry_days"), "the days between entries")?),
            _ => EntryPolicy::Once,
        };
        let exit_when = self.exit_when()?;
        let steps = self.steps.iter().enumerate().map(|(i, step)| read_step(i, step)).collect::<Result<_, _>>()?;
        Ok(JourneySpec { name: self.get("name").trim().to_owned(), enabled, when, entry, steps, exit_when })
    }

    fn trigger(&self) -> Result<Trigger, String> {
        Ok(match self.get("trigger") {
            "event" => {
                Trigger::Event { name: self.get("event_name").trim().to_owned(), conditions: self.conditions()? }
            }
            "audience_entered" => Trigger::AudienceEntered { audience: self.get("audience").trim().to_owned() },
            "audience_exited" => Trigger::AudienceExited { audience: self.get("audience").trim().to_owned() },
            "becomes_due" => Trigger::BecomesDue {},
            "bucket_changed" => Trigger::BucketChanged {
                to: Bucket::parse(self.get("bucket_to")).ok_or("choose the closeness bucket the contact moves into")?,
                from: choice(self.get("bucket_from"), Bucket::parse, "the bucket it comes from")?,
            },
            "health_band_changed" => Trigger::HealthBandChanged {
                to: choice(self.get("band_to"), Band::parse, "the band the health moves into")?,
                from: choice(self.get("band_from"), Band::parse, "the band it comes from")?,
            },
            "health_dropped" => Trigger::HealthDropped {
                points: number(self.get("drop_points"), "the points the health falls by")?,
                within_days: number(self.get("drop_days"), "the days the fall is counted over")?,
            },
            _ => return Err("choose what starts the journey".into()),
        })
    }

    /// The property conditions of an event trigger; a row left empty is no condition.
    fn conditions(&self) -> Result<Map<String, Value>, String> {
        let mut conditions = Map::new();
        for (i, condition) in self.conditions.iter().enumerate() {
            let n = i + 1;
            let key = cell(condition, "key").trim();
            let typed = cell(condition, "value");
            match (key.is_empty(), typed.trim().is_empty()) {
                (true, true) => continue,
                (true, false) => return Err(format!("condition {n}: name the property the value {typed:?} is for")),
                (false, true) => {
                    return Err(format!(
                        "condition {n}: type the value the property {key} must have (\"\" is empty text)"
                    ))
                }
                (false, false) => {}
            }
            let value = values::read(typed).map_err(|why| format!("condition {n} ({key}): {why}"))?;
            if conditions.insert(key.to_owned(), value).is_some() {
                return Err(format!(
                    "condition {n}: the property {key} has a condition already; list its values in one"
                ));
            }
        }
        Ok(conditions)
    }

    /// The exit events; a row left empty is none.
    fn exit_when(&self) -> Result<Vec<ExitWhen>, String> {
        let mut exits = Vec::new();
        for (i, exit) in self.exits.iter().enumerate() {
            let event = cell(exit, "event").trim();
            let same = optional(cell(exit, "same"));
            if event.is_empty() {
                match same {
                    None => continue,
                    Some(same) => {
                        return Err(format!("exit event {}: name the event that ends the journey (same {same})", i + 1))
                    }
                }
            }
            exits.push(ExitWhen { event: event.to_owned(), same });
        }
        Ok(exits)
    }
}

fn row(fields: &[(&str, String)]) -> Row {
    fields.iter().map(|(key, value)| ((*key).to_owned(), value.clone())).collect()
}

fn optional(value: &str) -> Option<String> {
    Some(value.trim().to_owned()).filter(|value| !value.is_empty())
}

/// The text of a text area as typed: browsers post its line breaks as CR LF.
fn multiline(value: &str) -> String {
    value.replace("\r\n", "\n")
}

fn number(value: &str, what: &str) -> Result<i64, String> {
    value.trim().parse().map_err(|_| format!("{what} is a whole number"))
}

/// An optional choice of a select: empty is "any".
fn choice<T>(value: &str, parse: impl Fn(&str) -> Option<T>, what: &str) -> Result<Option<T>, String> {
    match value {
        "" => Ok(None),
        name => parse(name).map(Some).ok_or_else(|| format!("{what} is not one of the choices ({name:?})")),
    }
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

fn step_fields(step: &Step) -> Row {
    let mut fields = Row::new();
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
            set("equals", equals.map(values::text).unwrap_or_default());
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

fn read_step(index: usize, step: &Row) -> Result<Step, String> {
    let get = |key: &str| cell(step, key);
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
            let equals = || match get("equals") {
                typed if typed.trim().is_empty() => Ok(None),
                typed => {
                    values::read(typed).map(Some).map_err(|why| format!("step {n}: the value {key} equals: {why}"))
                }
            };
            let condition = match get("test") {
                "audience" => Condition::Audience { key },
                "property" => Condition::Property { equals: equals()?, key },
                _ => Condition::Trait { equals: equals()?, key },
            };
            StepKind::Branch { condition, otherwise: read_next(get("otherwise"), Next::Exit) }
        }
        "message" => StepKind::Message { template: number(get("template"), &format!("step {n}: the template"))? },
        "webhook" => {
            let text = multiline(get("text"));
            StepKind::Webhook {
                url: get("url").trim().to_owned(),
                text: Some(text).filter(|text| !text.trim().is_empty()),
            }
        }
        "segment" => StepKind::Segment { event: get("event").trim().to_owned() },
        "note" => StepKind::Note { text: multiline(get("text")) },
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
    draft.set("trigger", "event");
    draft.steps.push(row(&[("kind", "wait".into()), ("hours", "24".into())]));
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

/// A field whose value is read as [`values::read`] reads it, described by the hint of `hint`.
fn value_field(label: &str, name: &str, value: &str, hint: &str) -> Markup {
    html! {
        div.field {
            label for=(name) { (label) }
            input id=(name) type="text" name=(name) value=(value) aria-describedby=(hint);
        }
    }
}

/// A text that may span lines. The line break after the opening tag is one the HTML parser
/// drops, so a text starting with a line break keeps it.
fn text_area(label: &str, name: &str, value: &str) -> Markup {
    html! {
        div.field {
            label for=(name) { (label) }
            textarea id=(name) name=(name) rows="2" { "\n" (value) }
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

fn bucket_options(any: bool) -> Vec<(String, String)> {
    let any = any.then(|| (String::new(), "any bucket".to_owned()));
    any.into_iter().chain(Bucket::ALL.iter().map(|b| (b.as_str().to_owned(), b.as_str().to_owned()))).collect()
}

fn band_options() -> Vec<(String, String)> {
    std::iter::once((String::new(), "any band".to_owned()))
        .chain(BANDS.iter().map(|band| (band.as_str().to_owned(), band.label().to_owned())))
        .collect()
}

/// A submit button that edits the form (adds, removes or moves a row) rather than saving it.
fn op_button(op: &str, text: &str, label: &str) -> Markup {
    html! { button.button.button-small type="submit" name="op" value=(op) aria-label=(label) { (text) } }
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
    let title = saved.as_ref().map_or("New journey".to_owned(), |j| j.spec.name.clone());
    let body = html! {
        p.crumbs { a href="/journeys" { "← Journeys" } }
        (layout::page_header(&title, None, saved.as_ref().map(|j| html! {
            a.button.button-small href={ "/journeys/" (j.id) "/backtest" } { "Backtest" }
            (toggle_form(signed, j.id, j.spec.enabled, &j.spec.name))
        })))
        @if let Some((_, counts)) = &counts {
            p.muted #journey-counts {
                (counts.entered) " entered · " (counts.active) " in it now · " (counts.completed) " completed · " (counts.exited) " left early"
            }
        }
        @if let Some(error) = error { (layout::alert(AlertKind::Error, error)) }
        (form(draft, layout::csrf(signed), &template_options, counts.as_ref().map(|(c, _)| c.as_slice())))
    };
    Ok(layout::page_with_status(signed, Nav::Journeys, &title, status, body))
}

/// The builder's form: what a browser posts from it is what [`Draft::from_form`] reads.
fn form(draft: &Draft, csrf: Markup, templates: &[(String, String)], counts: Option<&[StepCount]>) -> Markup {
    let targets: Vec<(String, String)> = {
        let mut targets = pairs(&[("continue", "the next step"), ("exit", "leave the journey")]);
        for (i, step) in draft.steps.iter().enumerate() {
            if let Some(id) = step.get("id").filter(|id| !id.is_empty()) {
                targets.push((format!("step:{id}"), format!("step {}", i + 1)));
            }
        }
        targets
    };
    let trigger = draft.get("trigger");
    html! {
        form.stack.builder #journey-builder method="post" action="/journeys/builder" {
            (csrf)
            // Enter in a field submits with the form's first button: let that be saving, not
            // the first "Remove".
            button.visually-hidden type="submit" name="op" value="save" tabindex="-1" aria-hidden="true" { "Save" }
            @if let Some(id) = draft.id { input type="hidden" name="id" value=(id); }
            @for rows in Rows::ALL {
                input type="hidden" name=(rows.count_field()) value=(draft.rows(rows).len());
            }
            section.card.stack {
                h2 { "Entry" }
                (field("Name", "name", draft.get("name"), "text"))
                div.condition {
                    (select("Starts when", "trigger", trigger, &pairs(&TRIGGERS)))
                    div { (op_button("trigger", "Choose", "Choose what starts the journey")) }
                }
                @match trigger {
                    "event" => {
                        (field("Event name", "event_name", draft.get("event_name"), "text"))
                        fieldset.stack {
                            legend { "Only when the event's properties have these values" }
                            p.hint #value-hint { (values::HINT) }
                            @for (j, condition) in draft.conditions.iter().enumerate() {
                                div.condition {
                                    div.field {
                                        label id={ "c" (j) ".key-label" } for={ "c" (j) ".key" } { "Property " (j + 1) }
                                        input id={ "c" (j) ".key" } type="text" name={ "c" (j) ".key" } value=(cell(condition, "key"));
                                    }
                                    div.field {
                                        label id={ "c" (j) ".value-label" } for={ "c" (j) ".value" } { "equals" }
                                        input id={ "c" (j) ".value" } type="text" name={ "c" (j) ".value" } value=(cell(condition, "value"))
                                            aria-labelledby={ "c" (j) ".key-label c" (j) ".value-label" } aria-describedby="value-hint";
                                    }
                                    div { (op_button(&format!("remove_condition:{j}"), "Remove", &format!("Remove condition {}", j + 1))) }
                                }
                            }
                            div { (op_button("add_condition", "Add condition", "Add condition")) }
                        }
                    }
                    "audience_entered" | "audience_exited" => { (field("Audience key", "audience", draft.get("audience"), "text")) }
                    "bucket_changed" => {
                        div.row {
                            (select("Moves into the bucket", "bucket_to", draft.get("bucket_to"), &bucket_options(false)))
                            (select("coming from", "bucket_from", draft.get("bucket_from"), &bucket_options(true)))
                        }
                    }
                    "health_band_changed" => {
                        div.row {
                            (select("Moves into the band", "band_to", draft.get("band_to"), &band_options()))
                            (select("coming from", "band_from", draft.get("band_from"), &band_options()))
                        }
                        p.hint { (HEALTH_HINT) }
                    }
                    "health_dropped" => {
                        div.row {
                            (field("Falls by at least (points, 1 to 100)", "drop_points", draft.get("drop_points"), "number"))
                            (field("from its highest score within (days)", "drop_days", draft.get("drop_days"), "number"))
                        }
                        p.hint { (HEALTH_HINT) }
                    }
                    _ => {}
                }
                div.row {
                    (select("Entry", "entry", draft.get("entry"), &pairs(&[
                        ("once", "once per contact"), ("once_per_days", "once every N days"), ("every_time", "every time")])))
                    (field("N days", "entry_days", draft.get("entry_days"), "number"))
                }
                fieldset.stack {
                    legend { "Leave the journey when the contact does" }
                    @for (j, exit) in draft.exits.iter().enumerate() {
                        div.condition {
                            div.field {
                                label id={ "x" (j) ".event-label" } for={ "x" (j) ".event" } { "Exit event " (j + 1) }
                                input id={ "x" (j) ".event" } type="text" name={ "x" (j) ".event" } value=(cell(exit, "event"));
                            }
                            div.field {
                                label id={ "x" (j) ".same-label" } for={ "x" (j) ".same" } { "with the same property as the entry event" }
                                input id={ "x" (j) ".same" } type="text" name={ "x" (j) ".same" } value=(cell(exit, "same"))
                                    aria-labelledby={ "x" (j) ".event-label x" (j) ".same-label" };
                            }
                            div { (op_button(&format!("remove_exit:{j}"), "Remove", &format!("Remove exit event {}", j + 1))) }
                        }
                    }
                    div { (op_button("add_exit", "Add exit event", "Add exit event")) }
                }
            }
            section.card {
                h2 { "Steps" }
                ol.steps {
                    @for (i, step) in draft.steps.iter().enumerate() {
                        (step_row(i, step, draft.steps.len(), templates, &targets, counts, draft.id))
                    }
                }
                div.row {
                    (select("Add a step", "add_kind", "wait", &pairs(&KINDS)))
                    div { button.button type="submit" name="op" value="add" { "Add step" } }
                }
            }
            div { button.button.button-primary type="submit" name="op" value="save" { "Save journey" } }
        }
    }
}

fn step_row(
    i: usize,
    step: &Row,
    total: usize,
    templates: &[(String, String)],
    targets: &[(String, String)],
    counts: Option<&[StepCount]>,
    journey: Option<i64>,
) -> Markup {
    let get = |key: &str| cell(step, key);
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
                        (value_field("equals (empty: is set)", &name("equals"), get("equals"), &format!("s{i}-equals-hint")))
                    }
                    p.hint id={ "s" (i) "-equals-hint" } { (values::HINT) }
                    (select("Otherwise go to", &name("otherwise"), get("otherwise"), targets))
                }
                "message" => { (select("Template", &name("template"), get("template"), templates)) }
                "webhook" => {
                    (field("URL", &name("url"), get("url"), "url"))
                    (text_area("Text", &name("text"), get("text")))
                }
                "segment" => { (field("Track event", &name("event"), get("event"), "text")) }
                "note" => { (text_area("Note", &name("text"), get("text"))) }
                "cadence" => { (field("Cadence in days (empty clears it)", &name("days"), get("days"), "number")) }
                _ => {}
            }
            div.row {
                @if i > 0 { (op_button(&format!("up:{i}"), "↑ Up", &format!("Move step {} up", i + 1))) }
                @if i + 1 < total { (op_button(&format!("down:{i}"), "↓ Down", &format!("Move step {} down", i + 1))) }
                button.button.button-small.button-danger type="submit" name="op" value={ "remove:" (i) } aria-label={ "Remove step " (i + 1) } { "Remove" }
            }
        }
    }
}

/// Applies a button that edits the form: adds, removes or moves a row, or shows the fields of
/// the trigger chosen. A button naming a row that is not there changes nothing.
fn edit(draft: &mut Draft, op: &str, add_kind: &str) {
    let index = |prefix: &str| op.strip_prefix(prefix).and_then(|i| i.parse::<usize>().ok());
    let mut remove = |rows: Rows, i: Option<usize>| {
        if let Some(i) = i.filter(|i| *i < draft.rows(rows).len()) {
            draft.rows_mut(rows).remove(i);
        }
    };
    match op {
        "add" => draft.steps.push(row(&[("kind", add_kind.to_owned())])),
        "add_condition" => draft.conditions.push(Row::new()),
        "add_exit" => draft.exits.push(Row::new()),
        _ if op.starts_with("remove:") => remove(Rows::Steps, index("remove:")),
        _ if op.starts_with("remove_condition:") => remove(Rows::Conditions, index("remove_condition:")),
        _ if op.starts_with("remove_exit:") => remove(Rows::Exits, index("remove_exit:")),
        _ => {
            let steps = draft.steps.len();
            if let Some(i) = index("up:").filter(|i| *i > 0 && *i < steps) {
                draft.steps.swap(i - 1, i);
            } else if let Some(i) = index("down:").filter(|i| i + 1 < steps) {
                draft.steps.swap(i, i + 1);
            }
        }
    }
}

/// `POST /journeys/builder`: edit the form and show it again, or save.
pub async fn post_builder(
    State(state): State<AppState>,
    Posted(signed, form): Posted<HashMap<String, String>>,
) -> WebResult<Response> {
    let mut draft = Draft::from_form(&form);
    let op = form.get("op").map_or("save", String::as_str);
    if op == "save" {
        return save(&state, &signed, &draft).await;
    }
    edit(&mut draft, op, form.get("add_kind").map_or("wait", String::as_str));
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Undoes the escaping of a rendered attribute or text.
    fn unescape(text: &str) -> String {
        text.replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&")
    }

    /// The attributes of the tag starting at `tag` (after its name), and where the tag ends.
    fn attributes(tag: &str) -> (HashMap<String, String>, usize) {
        let mut attributes = HashMap::new();
        let mut rest = tag;
        loop {
            rest = rest.trim_start();
            if let Some(after) = rest.strip_prefix('>') {
                return (attributes, tag.len() - after.len());
            }
            let end = rest.find(|c: char| c == '=' || c == '>' || c.is_whitespace()).unwrap();
            let name = rest[..end].to_owned();
            rest = &rest[end..];
            if let Some(quoted) = rest.strip_prefix("=\"") {
                let close = quoted.find('"').unwrap();
                attributes.insert(name, unescape(&quoted[..close]));
                rest = &quoted[close + 1..];
            } else {
                attributes.insert(name, String::new());
            }
        }
    }

    /// What a browser posts from the form when a button that is not "Save" is not pressed: each
    /// input's value as the browser keeps it (a text field drops line breaks, a number field
    /// anything that is not a number), each select's chosen option (else its first), each text
    /// area's text with its line breaks as CR LF.
    fn posted(html: &str) -> HashMap<String, String> {
        let mut form = HashMap::new();
        let mut rest = html;
        while let Some(start) = rest.find('<') {
            rest = &rest[start + 1..];
            let name_end = rest.find(|c: char| c.is_whitespace() || c == '>').unwrap();
            let tag = &rest[..name_end];
            if !matches!(tag, "input" | "select" | "textarea") {
                continue;
            }
            let (attrs, end) = attributes(&rest[name_end..]);
            rest = &rest[name_end + end..];
            let Some(name) = attrs.get("name").cloned() else { continue };
            let value = match tag {
                "input" => {
                    let value = attrs.get("value").cloned().unwrap_or_default();
                    match attrs.get("type").map_or("text", String::as_str) {
                        "hidden" => value,
                        "number" => value.parse::<f64>().map(|_| value.clone()).unwrap_or_default(),
                        "url" => value.replace(['\r', '\n'], "").trim().to_owned(),
                        _ => value.replace(['\r', '\n'], ""),
                    }
                }
                "select" => {
                    let close = rest.find("</select>").unwrap();
                    let options: Vec<HashMap<String, String>> =
                        rest[..close].split("<option").skip(1).map(|option| attributes(option).0).collect();
                    rest = &rest[close..];
                    let chosen = options.iter().find(|o| o.contains_key("selected")).or(options.first()).unwrap();
                    chosen["value"].clone()
                }
                _ => {
                    let close = rest.find("</textarea>").unwrap();
                    let text = unescape(&rest[..close]);
                    rest = &rest[close..];
                    text.strip_prefix('\n').unwrap_or(&text).replace('\n', "\r\n")
                }
            };
            form.insert(name, value);
        }
        form
    }

    fn templates() -> Vec<(String, String)> {
        vec![(String::new(), "—".into()), ("7".into(), "Welcome (#7)".into())]
    }

    /// The draft a browser sends back after showing `draft`'s form.
    fn round_trip(draft: &Draft) -> Draft {
        Draft::from_form(&posted(&form(draft, html! {}, &templates(), None).into_string()))
    }

    /// A journey the API takes.
    fn spec(value: Value) -> JourneySpec {
        let spec: JourneySpec = serde_json::from_value(value).unwrap();
        spec.validate().unwrap();
        spec
    }

    fn journeys() -> Vec<JourneySpec> {
        let steps = json!([
            {"id": 1, "wait": {"hours": 24}},
            {"id": 2, "wait_until": {"event": "Order Completed", "same": "cartId", "hours": 48, "then": "exit", "timeout": {"step": 5}}},
            {"id": 3, "wait_until": {"event": "Project Created", "hours": 2}},
            {"id": 4, "branch": {"condition": {"trait": {"key": "plan", "equals": ["pro", "team", 3, true]}}, "otherwise": {"step": 6}}},
            {"id": 5, "branch": {"condition": {"trait": {"key": "company"}}, "otherwise": "continue"}},
            {"id": 6, "branch": {"condition": {"audience": {"key": "vip"}}}},
            {"id": 7, "branch": {"condition": {"property": {"key": "seats", "equals": 12}}}},
            {"id": 8, "branch": {"condition": {"property": {"key": "coupon", "equals": "SPRING, 20%"}}}},
            {"id": 9, "branch": {"condition": {"property": {"key": "code", "equals": ""}}}},
            {"id": 10, "branch": {"condition": {"property": {"key": "tier", "equals": ["gold"]}}}},
            {"id": 11, "message": {"template": 7}},
            {"id": 12, "webhook": {"url": "https://hooks.example.com/a", "text": "{name} <{email}> & co\nline two"}},
            {"id": 13, "webhook": {"url": "https://hooks.example.com/b"}},
            {"id": 14, "segment": {"event": "Journey Step"}},
            {"id": 15, "note": {"text": "\nA note \"quoted\" over\nlines "}},
            {"id": 16, "cadence": {"days": 14}},
            {"id": 17, "cadence": {"days": null}},
            {"id": 20, "exit": {}}
        ]);
        let mut all = vec![
            spec(json!({
                "name": "Every kind of step", "enabled": false,
                "when": {"event": {"name": "Signed Up", "where": {
                    "plan": ["pro", "team"], "seats": 5, "ratio": 2.5, "trial": true, "zip": "02139",
                    "code": "42", "flag": "true", "empty": "", "company": "Acme, Inc.", "spaced": " x ",
                    "one": ["solo"], "none": [], "mixed": ["5", 5, false, "a, b", null], "nested": [[1, 2], "x"],
                    "missing": null, "object": {"a": 1}, "quote": "\"hi\"", "bracket": "[x]", "big": 1e300, "neg": -3
                }}},
                "entry": {"once_per_days": 30},
                "steps": steps,
                "exit_when": [{"event": "Subscription Started"}, {"event": "Order Completed", "same": "cartId"}, {"event": "Unsubscribed"}]
            })),
            spec(json!({"name": "No conditions", "when": {"event": {"name": "Signed Up"}}, "entry": "every_time",
                "steps": [{"id": 1, "exit": {}}]})),
        ];
        for when in [
            json!({"audience_entered": {"audience": "trial_users"}}),
            json!({"audience_exited": {"audience": "trial_users"}}),
            json!({"becomes_due": {}}),
            json!({"bucket_changed": {"to": "cold"}}),
            json!({"bucket_changed": {"to": "warm", "from": "close"}}),
            json!({"health_band_changed": {}}),
            json!({"health_band_changed": {"to": "at_risk"}}),
            json!({"health_band_changed": {"from": "healthy"}}),
            json!({"health_band_changed": {"to": "needs_attention", "from": "healthy"}}),
            json!({"health_dropped": {"points": 20, "within_days": 7}}),
        ] {
            all.push(spec(json!({"name": "Trigger", "when": when, "steps": [{"id": 3, "note": {"text": "x"}}],
                "exit_when": [{"event": "Churned", "same": "accountId"}]})));
        }
        all
    }

    #[test]
    fn every_journey_comes_back_unchanged_through_the_form() {
        for spec in journeys() {
            let back = round_trip(&Draft::from_spec(Some(1), &spec));
            assert_eq!(back.to_spec(spec.enabled), Ok(spec.clone()), "{}", serde_json::to_string(&spec).unwrap());
        }
    }

    #[test]
    fn values_read_as_the_hint_says() {
        let read = |typed: &str| values::read(typed).unwrap();
        assert_eq!(read("enterprise"), json!("enterprise"));
        assert_eq!(read("  Acme Inc  "), json!("Acme Inc"));
        assert_eq!(read("42"), json!(42));
        assert_eq!(read("2.5"), json!(2.5));
        assert_eq!(read("\"42\""), json!("42"));
        assert_eq!(read("true"), json!(true));
        assert_eq!(read("007"), json!("007"), "not a JSON number: text");
        assert_eq!(read("pro, team"), json!(["pro", "team"]));
        assert_eq!(read("pro,5, \"Acme, Inc.\""), json!(["pro", 5, "Acme, Inc."]));
        assert_eq!(read("[\"pro\", \"team\"]"), json!(["pro", "team"]));
        assert_eq!(read("[\"pro\"]"), json!(["pro"]));
        assert_eq!(read("say \"hi\""), json!("say \"hi\""), "a quote inside a word is the word's");
        for value in journeys().iter().flat_map(|spec| match &spec.when {
            Trigger::Event { conditions, .. } => conditions.values().cloned().collect(),
            _ => Vec::new(),
        }) {
            assert_eq!(read(&values::text(&value)), value, "{value} shown as {}", values::text(&value));
        }
        assert_eq!(values::text(&json!(["pro", "team"])), "pro, team");
        assert_eq!(values::text(&json!(5)), "5");
        assert_eq!(values::text(&json!("5")), "\"5\"");
    }

    fn refusal(fields: &[(&str, &str)]) -> String {
        let mut form: HashMap<String, String> = HashMap::from([
            ("name".into(), "x".into()),
            ("trigger".into(), "event".into()),
            ("event_name".into(), "E".into()),
        ]);
        form.extend(fields.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        Draft::from_form(&form).to_spec(true).unwrap_err()
    }

    #[test]
    fn nonsense_gets_a_message_saying_what_to_change() {
        let condition = |value: &str| refusal(&[("conditions", "1"), ("c0.key", "plan"), ("c0.value", value)]);
        assert_eq!(condition("\"pro"), "condition 1 (plan): the text in quotes is not closed");
        assert_eq!(condition("[1, 2"), "condition 1 (plan): the list in brackets is not closed");
        assert!(condition("[pro, team]").contains("write a list as pro, team"), "{}", condition("[pro, team]"));
        assert!(condition("{a}").contains("the value in braces is not valid JSON"));
        assert!(condition("pro,,team").contains("missing between commas"));
        assert!(condition("pro,").contains("missing between commas"));
        assert!(condition("\"pro\" team").contains("separate values with commas"));
        assert!(condition("  ").contains("type the value the property plan must have"));
        assert!(refusal(&[("conditions", "1"), ("c0.value", "pro")]).contains("name the property"));
        let twice = refusal(&[
            ("conditions", "2"),
            ("c0.key", "plan"),
            ("c0.value", "a"),
            ("c1.key", "plan"),
            ("c1.value", "b"),
        ]);
        assert!(twice.contains("condition 2: the property plan has a condition already"), "{twice}");
        assert!(refusal(&[("exits", "1"), ("x0.same", "cartId")]).contains("exit event 1: name the event"));
        assert!(refusal(&[("entry", "once_per_days"), ("entry_days", "soon")]).contains("whole number"));
        assert!(refusal(&[("trigger", "teleport")]).contains("choose what starts"));
        assert!(refusal(&[("trigger", "bucket_changed"), ("bucket_to", "lukewarm")]).contains("closeness bucket"));
        assert!(refusal(&[("trigger", "bucket_changed"), ("bucket_to", "cold"), ("bucket_from", "hot")])
            .contains("\"hot\""));
        assert!(refusal(&[("trigger", "health_band_changed"), ("band_to", "purple")]).contains("\"purple\""));
        assert!(
            refusal(&[("trigger", "health_dropped"), ("drop_points", "lots"), ("drop_days", "7")]).contains("points")
        );
        assert!(refusal(&[("trigger", "health_dropped"), ("drop_points", "10")]).contains("days"));
        let step = |fields: &[(&str, &str)]| {
            let mut all = vec![("steps", "1")];
            all.extend(fields.iter().map(|(k, v)| (*k, *v)));
            refusal(&all)
        };
        assert!(step(&[("s0.kind", "wait"), ("s0.hours", "a day")]).contains("step 1: the hours is a whole number"));
        assert!(step(&[("s0.kind", "message")]).contains("step 1: the template"));
        assert!(step(&[("s0.kind", "cadence"), ("s0.days", "-")]).contains("step 1: the days"));
        assert!(step(&[("s0.kind", "teleport")]).contains("step 1: choose what it does"));
        let branch = step(&[("s0.kind", "branch"), ("s0.test", "trait"), ("s0.key", "plan"), ("s0.equals", "[pro")]);
        assert!(branch.starts_with("step 1: the value plan equals: the list in brackets"), "{branch}");
        let audience =
            [("steps", "1"), ("s0.kind", "branch"), ("s0.test", "audience"), ("s0.key", "vip"), ("s0.equals", "[pro")];
        let form: HashMap<String, String> = audience.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        assert!(Draft::from_form(&form).steps[0].contains_key("equals"));
        assert!(read_step(0, &Draft::from_form(&form).steps[0]).is_ok(), "an audience has no value to read");
    }

    #[test]
    fn rows_are_added_removed_and_moved_without_losing_what_was_typed() {
        let mut draft = Draft::from_spec(None, &journeys()[0]);
        let conditions = draft.conditions.len();
        edit(&mut draft, "add_condition", "wait");
        edit(&mut draft, "add_exit", "wait");
        edit(&mut draft, "add", "note");
        let mut back = round_trip(&draft);
        assert_eq!((back.conditions.len(), back.exits.len(), back.steps.len()), (conditions + 1, 4, 19));
        back.conditions[conditions].insert("key".into(), "extra".into());
        back.conditions[conditions].insert("value".into(), "1, 2".into());
        edit(&mut back, "remove_condition:0", "wait");
        edit(&mut back, "remove_exit:0", "wait");
        edit(&mut back, "remove_exit:99", "wait");
        edit(&mut back, "up:1", "wait");
        let spec = round_trip(&back).to_spec(true).unwrap();
        let Trigger::Event { conditions: read, .. } = &spec.when else { panic!() };
        assert_eq!(read.get("extra"), Some(&json!([1, 2])));
        assert!(!read.contains_key("big"), "the first condition (in key order) is gone");
        assert_eq!(spec.exit_when.len(), 2, "the empty exit row is none, the first one removed");
        assert_eq!(spec.exit_when[0].event, "Order Completed");
        assert_eq!(spec.steps.iter().map(|s| s.id).take(3).collect::<Vec<_>>(), vec![2, 1, 3]);
        assert!(matches!(spec.steps.last().unwrap().kind, StepKind::Note { .. }));
    }
}
