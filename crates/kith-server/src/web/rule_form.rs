//! The rule builder: a nudge rule as a form — when (an event with property conditions, an
//! audience entered or exited, becoming due, a closeness bucket change), unless another event
//! follows within a delay, then one or more actions — read field by field, so that each
//! refusal is shown next to what to change. The JSON of the API stays available beside it.

use std::collections::BTreeMap;

use kith_core::closeness::Bucket;
use kith_core::identity::normalize_email;
use kith_core::rules::{Action, RuleSpec, Trigger, Unless, MAX_UNLESS_HOURS};
use kith_store::{Template, WorkspaceId};
use maud::{html, Markup};
use serde_json::Map;

use super::layout;
use super::session::Signed;
use super::values;
use crate::AppState;

/// Property conditions shown beyond those a rule has: room to add a few without JavaScript.
const SPARE_CONDITIONS: usize = 2;
/// The most property conditions the form reads.
const MAX_CONDITIONS: usize = 20;

/// The triggers, as the form's `when` values, with what people read.
const TRIGGERS: [(&str, &str); 5] = [
    ("event", "does an event"),
    ("audience_entered", "enters an audience"),
    ("audience_exited", "exits an audience"),
    ("becomes_due", "becomes due a touch"),
    ("bucket_changed", "moves to another closeness bucket"),
];

/// The form's values by field name, as typed or as a stored rule fills them.
#[derive(Debug, Default, Clone)]
pub struct Draft(BTreeMap<String, String>);

impl Draft {
    /// The fields of a posted form (the last value of a repeated name wins).
    pub fn from_fields(fields: Vec<(String, String)>) -> Self {
        Draft(fields.into_iter().collect())
    }

    fn get(&self, name: &str) -> &str {
        self.0.get(name).map_or("", String::as_str)
    }

    fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.insert(name.into(), value.into());
    }

    fn checked(&self, name: &str) -> bool {
        !self.get(name).is_empty()
    }

    /// The `rule` field of the advanced form: the rule as JSON.
    pub fn json(&self) -> Option<&str> {
        self.0.get("rule").map(String::as_str)
    }

    /// A new rule's form: on, triggered by an event.
    pub fn new_rule() -> Self {
        let mut draft = Draft::default();
        draft.set("enabled", "1");
        draft.set("when", "event");
        draft.set("unless_unit", "days");
        draft
    }

    /// The form filled with a stored rule; the second value is `false` when the form cannot
    /// hold all of it (two actions of one kind, or a rule on account health), which only the
    /// JSON can then change.
    pub fn of(spec: &RuleSpec) -> (Self, bool) {
        let mut draft = Draft::default();
        draft.set("name", spec.name.clone());
        if spec.enabled {
            draft.set("enabled", "1");
        }
        match &spec.when {
            Trigger::Event { name, conditions } => {
                draft.set("when", "event");
                draft.set("event_name", name.clone());
                for (index, (key, value)) in conditions.iter().enumerate() {
                    draft.set(format!("cond_key_{index}"), key.clone());
                    draft.set(format!("cond_value_{index}"), values::text(value));
                }
            }
            Trigger::AudienceEntered { audience } => {
                draft.set("when", "audience_entered");
                draft.set("audience", audience.clone());
            }
            Trigger::AudienceExited { audience } => {
                draft.set("when", "audience_exited");
                draft.set("audience", audience.clone());
            }
            Trigger::BecomesDue {} => draft.set("when", "becomes_due"),
            Trigger::BucketChanged { to, from } => {
                draft.set("when", "bucket_changed");
                draft.set("bucket_to", to.as_str());
                draft.set("bucket_from", from.map_or("", Bucket::as_str));
            }
            Trigger::HealthBandChanged { .. } | Trigger::HealthDropped { .. } => return (draft, false),
        }
        match &spec.unless {
            Some(unless) => {
                draft.set("unless_event", unless.event.clone());
                let days = unless.within_hours % 24 == 0;
                let within = if days { unless.within_hours / 24 } else { unless.within_hours };
                draft.set("unless_within", within.to_string());
                draft.set("unless_unit", if days { "days" } else { "hours" });
            }
            None => draft.set("unless_unit", "days"),
        }
        let mut kinds = Vec::new();
        for action in &spec.then {
            let kind = match action {
                Action::Message { template } => {
                    draft.set("message_template", template.to_string());
                    "message"
                }
                Action::Email { to, subject, body } => {
                    draft.set("email_to", to.clone());
                    draft.set("email_subject", subject.clone().unwrap_or_default());
                    draft.set("email_body", body.clone().unwrap_or_default());
                    "email"
                }
                Action::Webhook { url, text } => {
                    draft.set("webhook_url", url.clone());
                    draft.set("webhook_text", text.clone().unwrap_or_default());
                    "webhook"
                }
                Action::Segment { event } => {
                    draft.set("segment_event", event.clone().unwrap_or_default());
                    "segment"
                }
                Action::EmailOwner { .. } => return (draft, false),
            };
            if kinds.contains(&kind) {
                return (draft, false);
            }
            kinds.push(kind);
            draft.set(format!("act_{kind}"), "1");
        }
        (draft, true)
    }
}

/// What the form refused, by field.
pub type Errors = Vec<(String, String)>;

fn error_of<'a>(errors: &'a Errors, field: &str) -> Option<&'a str> {
    errors.iter().find(|(f, _)| f == field).map(|(_, message)| message.as_str())
}

/// Reads the form into a rule; every refusal is named by its field, so the form can show it
/// there. What is read here is then checked as any rule is (`service::nudges`).
pub async fn read(state: &AppState, workspace: WorkspaceId, draft: &Draft) -> Result<RuleSpec, Errors> {
    let mut errors: Errors = Vec::new();
    let mut refuse = |field: &str, message: String| errors.push((field.to_owned(), message));

    let name = draft.get("name").trim().to_owned();
    if name.is_empty() || name.chars().count() > 200 {
        refuse("name", "a rule needs a name of 1 to 200 characters".into());
    }
    let when = match draft.get("when") {
        "event" => {
            let event = draft.get("event_name").trim();
            if event.is_empty() {
                refuse("event_name", "name the track event, e.g. Signed Up".into());
            }
            let mut conditions = Map::new();
            for index in 0..MAX_CONDITIONS {
                let key = draft.get(&format!("cond_key_{index}")).trim();
                let value = draft.get(&format!("cond_value_{index}")).trim();
                match (key.is_empty(), value.is_empty()) {
                    (true, true) => {}
                    (true, false) => refuse(&format!("cond_{index}"), "name the property this value is for".into()),
                    (false, _) if conditions.contains_key(key) => {
                        refuse(&format!("cond_{index}"), format!("the property {key:?} has a condition already"))
                    }
                    (false, _) => match values::read(value) {
                        Ok(value) => {
                            conditions.insert(key.to_owned(), value);
                        }
                        Err(why) => refuse(&format!("cond_{index}"), format!("the value for {key:?}: {why}")),
                    },
                }
            }
            Some(Trigger::Event { name: event.to_owned(), conditions })
        }
        kind @ ("audience_entered" | "audience_exited") => {
            let audience = draft.get("audience").trim().to_owned();
            if audience.is_empty() {
                refuse("audience", "name the audience by its key, e.g. trial_users".into());
            }
            Some(if kind == "audience_entered" {
                Trigger::AudienceEntered { audience }
            } else {
                Trigger::AudienceExited { audience }
            })
        }
        "becomes_due" => Some(Trigger::BecomesDue {}),
        "bucket_changed" => {
            let to = Bucket::parse(draft.get("bucket_to"));
            if to.is_none() {
                refuse("bucket_to", "choose the bucket the contact moves to".into());
            }
            let from = match draft.get("bucket_from") {
                "" => None,
                name => {
                    let from = Bucket::parse(name);
                    if from.is_none() {
                        refuse("bucket_from", "choose a bucket, or any".into());
                    }
                    from
                }
            };
            to.map(|to| Trigger::BucketChanged { to, from })
        }
        _ => {
            refuse("when", "choose what starts the rule".into());
            None
        }
    };

    let unless_event = draft.get("unless_event").trim();
    let unless_within = draft.get("unless_within").trim();
    let unless = match (unless_event.is_empty(), unless_within.is_empty()) {
        (true, true) => None,
        (true, false) => {
            refuse("unless_event", "name the event that cancels the rule, or empty the delay".into());
            None
        }
        (false, _) => {
            let hours_per = if draft.get("unless_unit") == "hours" { 1 } else { 24 };
            match unless_within.parse::<i64>().ok().and_then(|n| n.checked_mul(hours_per)) {
                Some(hours) if (1..=MAX_UNLESS_HOURS).contains(&hours) => {
                    Some(Unless { event: unless_event.to_owned(), within_hours: hours })
                }
                _ => {
                    refuse(
                        "unless_within",
                        format!("a delay is a whole number from 1 hour to {} days", MAX_UNLESS_HOURS / 24),
                    );
                    None
                }
            }
        }
    };

    let mut then = Vec::new();
    if draft.checked("act_message") {
        match draft.get("message_template").parse::<i64>() {
            Ok(template) => match state.store.template(workspace, template).await {
                Ok(Some(_)) => then.push(Action::Message { template }),
                Ok(None) => refuse("message_template", format!("the workspace has no template {template}")),
                Err(error) => refuse("message_template", format!("the templates could not be read: {error}")),
            },
            Err(_) => refuse("message_template", "choose the template to send".into()),
        }
    }
    if draft.checked("act_email") {
        let to = draft.get("email_to").trim();
        if normalize_email(to).is_none() {
            refuse("email_to", format!("{to:?} is not an email address"));
        }
        then.push(Action::Email {
            to: to.to_owned(),
            subject: optional(draft, "email_subject"),
            body: optional(draft, "email_body"),
        });
    }
    if draft.checked("act_webhook") {
        let url = draft.get("webhook_url").trim();
        if let Err(refused) = state.outbound.policy().check_url(url) {
            refuse("webhook_url", refused.to_string());
        }
        then.push(Action::Webhook { url: url.to_owned(), text: optional(draft, "webhook_text") });
    }
    if draft.checked("act_segment") {
        then.push(Action::Segment { event: optional(draft, "segment_event") });
    }
    if then.is_empty() {
        refuse("actions", "choose at least one thing to do".into());
    }

    match when {
        Some(when) if errors.is_empty() => Ok(RuleSpec { name, enabled: draft.checked("enabled"), when, unless, then }),
        _ => Err(errors),
    }
}

fn optional(draft: &Draft, name: &str) -> Option<String> {
    Some(draft.get(name).trim().to_owned()).filter(|text| !text.is_empty())
}

/// A field's error slot (with the id its input names in `aria-describedby`).
fn error_slot(errors: &Errors, field: &str) -> Markup {
    html! {
        @if let Some(message) = error_of(errors, field) {
            p.field-error id={ "err-" (field) } role="alert" { (layout::capitalize(message)) }
        }
    }
}

fn invalid(errors: &Errors, field: &str) -> Option<&'static str> {
    error_of(errors, field).map(|_| "true")
}

fn text_input(draft: &Draft, errors: &Errors, name: &str, label: &str, kind: &str, placeholder: &str) -> Markup {
    let id = format!("r-{name}");
    html! {
        div.field {
            label for=(id) { (label) }
            input id=(id) type=(kind) name=(name) value=(draft.get(name)) placeholder=(placeholder)
                aria-invalid=[invalid(errors, name)] aria-describedby={ "err-" (name) };
            (error_slot(errors, name))
        }
    }
}

fn bucket_options(selected: &str, any: bool) -> Markup {
    html! {
        @if any { option value="" selected[selected.is_empty()] { "any bucket" } }
        @for bucket in Bucket::ALL {
            option value=(bucket.as_str()) selected[selected == bucket.as_str()] { (bucket.as_str()) }
        }
    }
}

/// The builder: `action` is where the form posts; `json` the rule's JSON for the advanced form.
pub fn builder(
    signed: &Signed,
    action: &str,
    draft: &Draft,
    errors: &Errors,
    templates: &[Template],
    json: &str,
    advanced_open: bool,
) -> Markup {
    let when = draft.get("when");
    let conditions = (0..MAX_CONDITIONS)
        .rev()
        .find(|index| {
            !draft.get(&format!("cond_key_{index}")).is_empty() || !draft.get(&format!("cond_value_{index}")).is_empty()
        })
        .map_or(0, |last| last + 1);
    let rows = (conditions + SPARE_CONDITIONS).min(MAX_CONDITIONS);
    let action_box = |kind: &str, label: &str| {
        let name = format!("act_{kind}");
        html! {
            label.check {
                input type="checkbox" name=(name) value="1" checked[draft.checked(&name)] data-action-toggle=(kind);
                " " (label)
            }
        }
    };
    html! {
        form.stack.builder #rule-builder method="post" action=(action) {
            (layout::csrf(signed))
            div.row {
                (text_input(draft, errors, "name", "Name", "text", "e.g. Welcome new signups"))
                div.field {
                    span.label-like { "State" }
                    label.check { input type="checkbox" name="enabled" value="1" checked[draft.checked("enabled")]; " On" }
                }
            }
            fieldset {
                legend { "When a contact…" }
                div.field {
                    label for="r-when" { "Trigger" }
                    select #r-when name="when" aria-invalid=[invalid(errors, "when")] aria-describedby="err-when" data-trigger-select {
                        @for (value, label) in TRIGGERS {
                            option value=(value) selected[when == value] { (label) }
                        }
                    }
                    (error_slot(errors, "when"))
                }
                div.stack data-when="event" {
                    (text_input(draft, errors, "event_name", "Event name", "text", "Signed Up"))
                    p.hint #conditions-hint { "Only when the event's properties have these values. " (values::HINT) }
                    @for index in 0..rows {
                        @let key = format!("cond_key_{index}");
                        @let value = format!("cond_value_{index}");
                        @let slot = format!("cond_{index}");
                        div.condition {
                            div.field {
                                label for={ "r-" (key) } { "Property " (index + 1) }
                                input id={ "r-" (key) } type="text" name=(key) value=(draft.get(&key)) placeholder="plan"
                                    aria-invalid=[invalid(errors, &slot)] aria-describedby={ "err-" (slot) " conditions-hint" };
                            }
                            div.field {
                                label for={ "r-" (value) } { "equals" }
                                input id={ "r-" (value) } type="text" name=(value) value=(draft.get(&value)) placeholder="enterprise"
                                    aria-invalid=[invalid(errors, &slot)] aria-describedby={ "err-" (slot) " conditions-hint" };
                            }
                        }
                        (error_slot(errors, &slot))
                    }
                }
                div.stack data-when="audience_entered audience_exited" {
                    (text_input(draft, errors, "audience", "Audience key", "text", "trial_users"))
                }
                div.row data-when="bucket_changed" {
                    div.field {
                        label for="r-bucket_to" { "Moves to" }
                        select #r-bucket_to name="bucket_to" aria-invalid=[invalid(errors, "bucket_to")] aria-describedby="err-bucket_to" {
                            (bucket_options(draft.get("bucket_to"), false))
                        }
                        (error_slot(errors, "bucket_to"))
                    }
                    div.field {
                        label for="r-bucket_from" { "From" }
                        select #r-bucket_from name="bucket_from" aria-invalid=[invalid(errors, "bucket_from")] aria-describedby="err-bucket_from" {
                            (bucket_options(draft.get("bucket_from"), true))
                        }
                        (error_slot(errors, "bucket_from"))
                    }
                }
            }
            fieldset {
                legend { "Unless… (optional)" }
                p.hint #unless-hint { "Wait, and act only if the contact does not do this event in time. Leave empty to act at once." }
                div.row {
                    (text_input(draft, errors, "unless_event", "Unless the contact does", "text", "Invited Teammate"))
                    div.field {
                        label for="r-unless_within" { "Within" }
                        input #r-unless_within type="number" name="unless_within" min="1" inputmode="numeric" value=(draft.get("unless_within"))
                            aria-invalid=[invalid(errors, "unless_within")] aria-describedby="err-unless_within unless-hint";
                        (error_slot(errors, "unless_within"))
                    }
                    div.field {
                        label for="r-unless_unit" { "Unit" }
                        select #r-unless_unit name="unless_unit" {
                            option value="days" selected[draft.get("unless_unit") != "hours"] { "days" }
                            option value="hours" selected[draft.get("unless_unit") == "hours"] { "hours" }
                        }
                    }
                }
            }
            fieldset aria-describedby="err-actions" {
                legend { "Then…" }
                (error_slot(errors, "actions"))
                div.stack {
                    (action_box("message", "Send a template to the contact"))
                    div.stack data-action="message" {
                        div.field {
                            label for="r-message_template" { "Template" }
                            select #r-message_template name="message_template" aria-invalid=[invalid(errors, "message_template")] aria-describedby="err-message_template" {
                                @if templates.is_empty() { option value="" { "No template yet" } }
                                @for template in templates {
                                    option value=(template.id) selected[draft.get("message_template") == template.id.to_string()] { (template.spec.name) }
                                }
                            }
                            (error_slot(errors, "message_template"))
                            p.hint { "To the contact's own email, if its consent for the template's topic allows. " a href="/messages" { "Templates" } }
                        }
                    }
                    (action_box("email", "Alert the team by email"))
                    div.stack data-action="email" {
                        (text_input(draft, errors, "email_to", "To", "email", "team@example.com"))
                        (text_input(draft, errors, "email_subject", "Subject (optional)", "text", "{name} signed up"))
                        div.field {
                            label for="r-email_body" { "Body (optional)" }
                            textarea #r-email_body name="email_body" rows="3" { (draft.get("email_body")) }
                        }
                    }
                    (action_box("webhook", "Post to a webhook (Slack or any)"))
                    div.stack data-action="webhook" {
                        (text_input(draft, errors, "webhook_url", "URL", "url", "https://hooks.slack.com/services/…"))
                        (text_input(draft, errors, "webhook_text", "Text (optional)", "text", "{name} ({email}) did {event}"))
                    }
                    (action_box("segment", "Send a track call to Segment"))
                    div.stack data-action="segment" {
                        (text_input(draft, errors, "segment_event", "Event name (optional)", "text", "Nudge Sent"))
                    }
                    p.hint { "Team emails and webhook texts may use {name}, {email}, {rule} and {event}." }
                }
            }
            div { button.button.button-primary type="submit" { "Save rule" } }
        }
        details.card #advanced open[advanced_open] {
            summary { "Advanced: the rule as JSON" }
            p.small.muted { "The exact form " code { "/api/rules" } " takes. Saving it replaces what the form above says." }
            form.stack method="post" action=(action) {
                (layout::csrf(signed))
                div.field {
                    label for="rule" { "Rule (JSON)" }
                    textarea #rule name="rule" rows="12" spellcheck="false" { (json) }
                }
                div { button.button type="submit" { "Save JSON" } }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn condition_values_read_as_the_journey_builder_reads_them() {
        // One reading for both forms: a list typed with commas, text in quotes stays text.
        assert_eq!(values::read("pro, team"), Ok(json!(["pro", "team"])));
        assert_eq!(values::read(&values::text(&json!("42"))), Ok(json!("42")));
        assert_eq!(values::read("42"), Ok(json!(42)));
        assert!(values::read("\"unclosed").is_err());
    }

    #[test]
    fn a_stored_rule_fills_the_form() {
        let spec: RuleSpec = serde_json::from_value(json!({
            "name": "Welcome", "when": {"event": {"name": "Signed Up", "where": {"plan": "pro", "seats": 3}}},
            "unless": {"event": "Invited Teammate", "within_hours": 48},
            "then": [{"message": {"template": 7}}, {"segment": {}}]
        }))
        .unwrap();
        let (draft, whole) = Draft::of(&spec);
        assert!(whole);
        assert_eq!(draft.get("event_name"), "Signed Up");
        assert_eq!(draft.get("unless_within"), "2");
        assert_eq!(draft.get("unless_unit"), "days");
        assert_eq!(draft.get("message_template"), "7");
        assert!(draft.checked("act_message") && draft.checked("act_segment") && !draft.checked("act_email"));
        let keys: Vec<&str> = (0..2).map(|i| draft.get(&format!("cond_key_{i}"))).collect();
        assert!(keys.contains(&"plan") && keys.contains(&"seats"));
        let two: RuleSpec = serde_json::from_value(json!({
            "name": "x", "when": {"becomes_due": {}},
            "then": [{"webhook": {"url": "https://a.example"}}, {"webhook": {"url": "https://b.example"}}]
        }))
        .unwrap();
        assert!(!Draft::of(&two).1, "two webhooks: only the JSON holds them");
    }
}
