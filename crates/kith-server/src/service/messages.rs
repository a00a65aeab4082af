//! Messages to contacts: templates (checked when saved, rendered in a sandbox), the consent a
//! message needs, signed unsubscribe links, the workspace's sender, its frequency cap and quiet
//! hours, and what a `message` delivery turns into when its turn comes.

use hmac::{Hmac, Mac};
use jiff::civil::Time;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use kith_core::identity::normalize_email;
use kith_store::{
    Contact, ContactKey, Delivery, MessageLimits, NewMessageEntry, Sender, StoreError, Subscription, TemplateSpec,
    Topic, WorkspaceId,
};
use minijinja::{Environment, UndefinedBehavior};
use rand::RngCore;
use serde_json::{json, Map, Value};
use sha2::Sha256;

use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// The longest subject, HTML or text part a template may have.
pub const MAX_TEMPLATE_BYTES: usize = 64 * 1024;
/// The longest a rendered part may grow: a loop cannot turn a small template into a huge mail.
pub const MAX_RENDERED_BYTES: usize = 512 * 1024;
/// The instructions one rendering may run: loops over traits finish well within it, a runaway
/// template stops.
const FUEL: u64 = 100_000;
/// How deep macros and nested blocks may go.
const RECURSION_LIMIT: usize = 32;

/// The trait that unsubscribes a contact from every topic when `true`.
pub const UNSUBSCRIBED_TRAIT: &str = "unsubscribed";
/// The trait holding per-topic consent: an object from topic name to `true` or `false`.
pub const SUBSCRIPTIONS_TRAIT: &str = "subscriptions";

/// The template engine every check and rendering uses. Built without minijinja's
/// `multi_template` and `loader` features, so a template cannot include, import or extend
/// another one, and nothing reaches the filesystem; fuel and a recursion limit bound the work.
/// A missing value renders as nothing, also through attributes (`account.name` for a contact
/// without an account): a trait one contact lacks must not fail its message.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(RECURSION_LIMIT);
    env
}

/// The three parts of a template: the field name people see, and the name minijinja is given
/// (its extension turns HTML escaping on for the HTML part only).
fn parts(spec: &TemplateSpec) -> [(&'static str, &'static str, &str); 3] {
    [("subject", "subject.txt", &spec.subject), ("html", "body.html", &spec.html), ("text", "body.txt", &spec.text)]
}

/// Refuses a template that would fail every send: no name, an unknown topic, a part too long or
/// with a syntax error (the message gives its line and column).
pub async fn check_template(state: &AppState, workspace: WorkspaceId, spec: &TemplateSpec) -> ApiResult<()> {
    if spec.name.trim().is_empty() || spec.name.len() > 200 {
        return Err(ApiError::bad_request(
            "invalid_template",
            "name",
            "a template needs a name of 1 to 200 characters",
        ));
    }
    if !state.store.topics(workspace).await?.iter().any(|topic| topic.id == spec.topic_id) {
        return Err(ApiError::bad_request(
            "unknown_topic",
            "topic_id",
            format!("the workspace has no topic {}; create one with POST /api/topics", spec.topic_id),
        ));
    }
    if spec.subject.trim().is_empty() {
        return Err(ApiError::bad_request("invalid_template", "subject", "a template needs a subject"));
    }
    let env = environment();
    for (field, name, source) in parts(spec) {
        if source.len() > MAX_TEMPLATE_BYTES {
            return Err(ApiError::bad_request(
                "invalid_template",
                field,
                format!("`{field}` is {} bytes; at most {MAX_TEMPLATE_BYTES}", source.len()),
            ));
        }
        if let Err(error) = env.template_from_named_str(name, source) {
            return Err(ApiError::bad_request("template_syntax", field, describe_error(field, source, &error)));
        }
    }
    Ok(())
}

/// `html: syntax error at line 3, column 7: unexpected end of input`.
fn describe_error(field: &str, source: &str, error: &minijinja::Error) -> String {
    let detail = error.detail().map_or_else(|| error.kind().to_string(), str::to_owned);
    let line = error.line().unwrap_or(1);
    let column = match error.range() {
        Some(range) => {
            let start = range.start.min(source.len());
            let line_start = source[..start].rfind('\n').map_or(0, |at| at + 1);
            source.get(line_start..start).map_or(1, |before| before.chars().count() + 1)
        }
        None => 1,
    };
    format!("`{field}`: error at line {line}, column {column}: {detail}")
}

/// A template rendered for one contact.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// One line.
    pub subject: String,
    pub html: String,
    pub text: String,
}

/// Renders the three parts over `context`; the error says which part failed and why.
pub fn render(spec: &TemplateSpec, context: &Value) -> Result<Rendered, String> {
    let env = environment();
    // kith builds the unsubscribe URL itself (the public URL, numbers and hex), so it goes into
    // an href as written rather than with its slashes escaped.
    let context: std::collections::BTreeMap<String, minijinja::Value> = context
        .as_object()
        .into_iter()
        .flatten()
        .map(|(key, value)| {
            let value = match (key.as_str(), value.as_str()) {
                ("unsubscribe_url", Some(url)) => minijinja::Value::from_safe_string(url.to_owned()),
                _ => minijinja::Value::from_serialize(value),
            };
            (key.clone(), value)
        })
        .collect();
    let mut out = Vec::with_capacity(3);
    for (field, name, source) in parts(spec) {
        let rendered = env
            .template_from_named_str(name, source)
            .and_then(|template| template.render(&context))
            .map_err(|error| describe_error(field, source, &error))?;
        if rendered.len() > MAX_RENDERED_BYTES {
            return Err(format!("`{field}` rendered to {} bytes; at most {MAX_RENDERED_BYTES}", rendered.len()));
        }
        out.push(rendered);
    }
    let text = out.pop().unwrap_or_default();
    let html = out.pop().unwrap_or_default();
    // A subject is one header line, whatever the template's line breaks.
    let subject = out.pop().unwrap_or_default().split_whitespace().collect::<Vec<_>>().join(" ");
    Ok(Rendered { subject, html, text })
}

/// What a template sees: `contact` (its traits, then its profile fields over them),
/// `event` (the triggering event's properties), `account` (the traits of the contact's
/// account, if any) and `unsubscribe_url`.
pub async fn context(
    state: &AppState,
    workspace: WorkspaceId,
    contact: &Contact,
    event: Option<&str>,
    unsubscribe_url: &str,
) -> Result<Value, StoreError> {
    let mut fields = contact.traits.clone();
    fields.insert("traits".into(), Value::Object(contact.traits.clone()));
    fields.insert("id".into(), json!(contact.id));
    fields.insert("email".into(), json!(contact.email));
    fields.insert("name".into(), json!(contact.name));
    fields.insert("first_seen_at".into(), json!(contact.first_seen_at.to_string()));
    fields.insert("last_seen_at".into(), json!(contact.last_seen_at.to_string()));
    let event = event
        .and_then(|payload| serde_json::from_str::<Value>(payload).ok())
        .and_then(|payload| payload.get("properties").cloned())
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    let account = state.store.contact_accounts(workspace, contact.id).await?.into_iter().next();
    let mut context = json!({
        "contact": fields,
        "event": event,
        "unsubscribe_url": unsubscribe_url,
    });
    if let Some(account) = account {
        let mut traits = account.traits;
        traits.insert("group_id".into(), json!(account.group_id));
        context["account"] = Value::Object(traits);
    }
    Ok(context)
}

/// Whether a message of `topic` may go to a contact, or why not. A no from any source wins:
/// the suppression list, the contact's own choice (preferences page, one-click unsubscribe),
/// or the `unsubscribed` / `subscriptions` traits from Segment. An opt-in topic also needs a
/// yes from the contact's choice or the traits.
pub fn consent(
    topic: &Topic,
    choice: Option<bool>,
    traits: &Map<String, Value>,
    suppressed: bool,
) -> Result<(), &'static str> {
    if suppressed {
        return Err("suppressed");
    }
    let from_traits = if traits.get(UNSUBSCRIBED_TRAIT).and_then(Value::as_bool) == Some(true) {
        Some(false)
    } else {
        traits.get(SUBSCRIPTIONS_TRAIT).and_then(|topics| topics.get(&topic.name)).and_then(Value::as_bool)
    };
    if choice == Some(false) || from_traits == Some(false) {
        return Err("unsubscribed");
    }
    if topic.opt_in && choice != Some(true) && from_traits != Some(true) {
        return Err("no_consent");
    }
    Ok(())
}

/// A new key for a workspace's unsubscribe links.
fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The workspace's sender, created with a fresh link key the first time it is asked for.
pub async fn sender(state: &AppState, workspace: WorkspaceId) -> Result<Sender, StoreError> {
    state.store.sender(workspace, &new_secret()).await
}

/// What a sender change may hold.
#[derive(Debug, Clone, Default)]
pub struct SenderChange {
    pub from_name: Option<String>,
    pub from_address: Option<String>,
    pub reply_to: Option<String>,
}

/// Checks and stores the sender; empty fields are unset.
pub async fn update_sender(state: &AppState, workspace: WorkspaceId, change: SenderChange) -> ApiResult<Sender> {
    let blank = |value: Option<String>| value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    let from_name = blank(change.from_name);
    if from_name.as_ref().is_some_and(|name| name.chars().count() > 100 || name.contains(['\r', '\n', '<', '>'])) {
        return Err(ApiError::bad_request(
            "invalid_sender",
            "from_name",
            "a from name is at most 100 characters, on one line, without < or >",
        ));
    }
    let address = |field: &str, value: Option<String>| -> ApiResult<Option<String>> {
        match blank(value) {
            None => Ok(None),
            Some(value) => normalize_email(&value).map(Some).ok_or_else(|| {
                ApiError::bad_request("invalid_sender", field, format!("{value:?} is not an email address"))
            }),
        }
    };
    let from_address = address("from_address", change.from_address)?;
    let reply_to = address("reply_to", change.reply_to)?;
    let current = sender(state, workspace).await?;
    Ok(state.store.set_sender(workspace, Sender { from_name, from_address, reply_to, ..current }).await?)
}

/// The trait naming a contact's IANA time zone, for quiet hours.
pub const TIMEZONE_TRAIT: &str = "timezone";
/// The longest frequency-cap window.
pub const MAX_CAP_WINDOW_HOURS: i64 = 24 * 90;

/// Checks and stores the frequency cap and quiet hours. A cap is a count and a window together,
/// quiet hours a start and an end ("HH:MM", different) together; `None` for both removes them.
pub async fn update_limits(
    state: &AppState,
    workspace: WorkspaceId,
    limits: MessageLimits,
) -> ApiResult<MessageLimits> {
    match (limits.cap_count, limits.cap_window_hours) {
        (None, None) => {}
        (Some(count), Some(hours)) if (1..=10_000).contains(&count) && (1..=MAX_CAP_WINDOW_HOURS).contains(&hours) => {}
        _ => {
            return Err(ApiError::bad_request(
                "invalid_cap",
                "cap",
                format!("a cap is {{\"messages\": 1 to 10000, \"within_hours\": 1 to {MAX_CAP_WINDOW_HOURS}}}"),
            ))
        }
    }
    match (limits.quiet_start.as_deref(), limits.quiet_end.as_deref()) {
        (None, None) => {}
        (Some(start), Some(end)) if start != end && parse_time(start).is_some() && parse_time(end).is_some() => {}
        _ => return Err(ApiError::bad_request(
            "invalid_quiet_hours",
            "quiet_hours",
            "quiet hours are {\"start\": \"HH:MM\", \"end\": \"HH:MM\"}, e.g. 21:00 to 08:00, start and end differing",
        )),
    }
    // The limits live beside the sender, which must exist first.
    sender(state, workspace).await?;
    state.store.set_message_limits(workspace, limits.clone()).await?;
    Ok(limits)
}

fn parse_time(text: &str) -> Option<Time> {
    text.parse::<Time>().ok().filter(|_| text.len() == 5)
}

/// When the quiet hours around `now` end, in `tz`; `None` outside quiet hours. Quiet hours may
/// span midnight (21:00 to 08:00).
pub fn quiet_until(now: Timestamp, tz: &TimeZone, start: Time, end: Time) -> Option<Timestamp> {
    let local = now.to_zoned(tz.clone());
    let time = local.time();
    let spans_midnight = start > end;
    let inside = if spans_midnight { time >= start || time < end } else { time >= start && time < end };
    if !inside {
        return None;
    }
    let mut date = local.date();
    if spans_midnight && time >= start {
        date = date.tomorrow().ok()?;
    }
    date.to_datetime(end).to_zoned(tz.clone()).ok().map(|zoned| zoned.timestamp())
}

/// The signature of an unsubscribe link: HMAC-SHA256 of what the link names, truncated to 128
/// bits, hex.
fn link_signature(secret: &str, workspace: WorkspaceId, contact: i64, topic: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("unsubscribe|{workspace}|{contact}|{topic}").as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..16])
}

/// The path of a contact's unsubscribe link for a topic; it works without signing in.
pub fn unsubscribe_path(secret: &str, workspace: WorkspaceId, contact: i64, topic: i64) -> String {
    format!("/unsubscribe/{workspace}/{contact}/{topic}/{}", link_signature(secret, workspace, contact, topic))
}

/// Whether a link's signature is the one kith made, compared in constant time.
pub fn link_is_valid(secret: &str, workspace: WorkspaceId, contact: i64, topic: i64, signature: &str) -> bool {
    use subtle::ConstantTimeEq;
    let expected = link_signature(secret, workspace, contact, topic);
    expected.len() == signature.len() && bool::from(expected.as_bytes().ct_eq(signature.as_bytes()))
}

/// A contact's preferences: every topic and whether messages of it would reach the contact.
pub async fn preferences(
    state: &AppState,
    workspace: WorkspaceId,
    contact: &Contact,
) -> Result<Vec<(Topic, bool)>, StoreError> {
    let topics = state.store.topics(workspace).await?;
    let choices = state.store.subscriptions(workspace, contact.id).await?;
    let suppressed = state.store.is_suppressed(workspace, &contact.email).await?;
    Ok(topics
        .into_iter()
        .map(|topic| {
            let choice = choice_of(&choices, topic.id);
            let allowed = consent(&topic, choice, &contact.traits, suppressed).is_ok();
            (topic, allowed)
        })
        .collect())
}

fn choice_of(choices: &[Subscription], topic: i64) -> Option<bool> {
    choices.iter().find(|choice| choice.topic_id == topic).map(|choice| choice.subscribed)
}

/// A message ready for SMTP.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The contact's email.
    pub to: String,
    /// The workspace's sender.
    pub sender: Sender,
    /// What the template rendered to.
    pub rendered: Rendered,
    /// The one-click unsubscribe URL (absolute).
    pub unsubscribe_url: String,
}

/// What a `message` delivery turns into when its turn comes.
#[derive(Debug)]
pub enum Prepared {
    /// Send it; record `entry` as sent once the SMTP server took it.
    Send(Box<Outgoing>, NewMessageEntry),
    /// The contact's consent does not allow it, or the frequency cap: recorded with the reason,
    /// never retried.
    Skip(NewMessageEntry),
    /// Due inside the contact's quiet hours: it waits until they end.
    Hold(Timestamp),
    /// It cannot be sent as configured (the template is gone, no public URL for the links).
    Fail(String),
}

/// Loads, checks consent, and renders a `message` delivery as of `now`.
pub async fn prepare(state: &AppState, delivery: &Delivery, now: Timestamp) -> Result<Prepared, StoreError> {
    let workspace = delivery.workspace_id;
    let number = |field: &str| delivery.payload.get(field).and_then(Value::as_i64);
    let (Some(template_id), Some(contact_id)) = (number("template"), number("contact_id")) else {
        return Ok(Prepared::Fail("not a message kith queued".into()));
    };
    let Some(template) = state.store.template(workspace, template_id).await? else {
        return Ok(Prepared::Fail(format!("template {template_id} no longer exists")));
    };
    let Some(contact) = state.store.contact(workspace, ContactKey::Id(contact_id)).await? else {
        return Ok(Prepared::Fail("the contact no longer exists".into()));
    };
    let Some(topic) = state.store.topics(workspace).await?.into_iter().find(|t| t.id == template.spec.topic_id) else {
        return Ok(Prepared::Fail(format!("the topic of template {template_id} no longer exists")));
    };
    let mut entry = NewMessageEntry {
        contact_id,
        rule_id: number("rule_id"),
        template_id,
        outcome: "sent".into(),
        reason: None,
        at: now,
    };
    let choices = state.store.subscriptions(workspace, contact_id).await?;
    let suppressed = state.store.is_suppressed(workspace, &contact.email).await?;
    if let Err(reason) = consent(&topic, choice_of(&choices, topic.id), &contact.traits, suppressed) {
        entry.outcome = "skipped".into();
        entry.reason = Some(reason.into());
        return Ok(Prepared::Skip(entry));
    }
    let limits = state.store.message_limits(workspace).await?;
    if let (Some(start), Some(end)) =
        (limits.quiet_start.as_deref().and_then(parse_time), limits.quiet_end.as_deref().and_then(parse_time))
    {
        let zone = contact.traits.get(TIMEZONE_TRAIT).and_then(Value::as_str).and_then(|name| TimeZone::get(name).ok());
        let zone = match zone {
            Some(zone) => zone,
            None => state.store.workspace(workspace).await?.map_or(TimeZone::UTC, |workspace| workspace.tz()),
        };
        if let Some(until) = quiet_until(now, &zone, start, end) {
            return Ok(Prepared::Hold(until));
        }
    }
    if let (Some(count), Some(hours)) = (limits.cap_count, limits.cap_window_hours) {
        let since = now.checked_sub(SignedDuration::from_hours(hours)).unwrap_or(Timestamp::MIN);
        if state.store.messages_sent_since(workspace, contact_id, since).await? >= count {
            entry.outcome = "skipped".into();
            entry.reason = Some("capped".into());
            return Ok(Prepared::Skip(entry));
        }
    }
    let Some(base) = state.web.config.public_url.as_deref() else {
        return Ok(Prepared::Fail(
            "public_url is not set: messages carry unsubscribe links, which need kith's public address".into(),
        ));
    };
    let sender = sender(state, workspace).await?;
    let unsubscribe_url = format!(
        "{}{}",
        base.trim_end_matches('/'),
        unsubscribe_path(&sender.link_secret, workspace, contact_id, topic.id)
    );
    // A rule's message reads its triggering event; a journey's carries its entry event.
    let event = match number("firing_id") {
        Some(firing) => state.store.firing_event(workspace, firing).await?,
        None => delivery.payload.get("event").map(Value::to_string),
    };
    let context = context(state, workspace, &contact, event.as_deref(), &unsubscribe_url).await?;
    match render(&template.spec, &context) {
        Ok(rendered) => Ok(Prepared::Send(
            Box::new(Outgoing { to: contact.email.clone(), sender, rendered, unsubscribe_url }),
            entry,
        )),
        Err(error) => Ok(Prepared::Fail(format!("template {template_id}: {error}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(subject: &str, html: &str, text: &str) -> TemplateSpec {
        TemplateSpec { name: "t".into(), topic_id: 1, subject: subject.into(), html: html.into(), text: text.into() }
    }

    #[test]
    fn templates_render_with_conditionals_loops_and_escaping() {
        let context = json!({"contact": {"first_name": "Ada", "tags": ["a", "b"]}, "event": {"plan": "<pro>"},
            "unsubscribe_url": "https://k/u"});
        let rendered = render(
            &spec(
                "Hi {{ contact.first_name }}\n!",
                "<p>{{ event.plan }}</p>{% for t in contact.tags %}{{ t }}{% endfor %}",
                "{% if account %}acct{% else %}none{% endif %} {{ event.plan | upper }} {{ unsubscribe_url }}",
            ),
            &context,
        )
        .unwrap();
        assert_eq!(rendered.subject, "Hi Ada !");
        assert_eq!(rendered.html, "<p>&lt;pro&gt;</p>ab");
        assert_eq!(rendered.text, "none <PRO> https://k/u");
    }

    #[test]
    fn a_runaway_template_stops() {
        let error = render(&spec("x", "{% for i in range(100000) %}{{ i }}{% endfor %}", ""), &json!({})).unwrap_err();
        assert!(error.starts_with("`html`"), "{error}");
        let include = render(&spec("x", "{% include 'x.html' %}", ""), &json!({})).unwrap_err();
        assert!(include.starts_with("`html`"), "{include}");
    }

    #[test]
    fn syntax_errors_name_line_and_column() {
        let source = "Hello\n  {{ contact.name }\nbye";
        let error = environment().template_from_named_str("body.html", source).unwrap_err();
        let message = describe_error("html", source, &error);
        assert!(message.starts_with("`html`: error at line 2, column "), "{message}");
    }

    #[test]
    fn consent_needs_no_from_anyone_and_a_yes_for_opt_in() {
        let opt_out = Topic { id: 1, name: "Tips".into(), opt_in: false, created_at: Timestamp::UNIX_EPOCH };
        let opt_in = Topic { opt_in: true, ..opt_out.clone() };
        let none = Map::new();
        assert_eq!(consent(&opt_out, None, &none, false), Ok(()));
        assert_eq!(consent(&opt_out, None, &none, true), Err("suppressed"));
        assert_eq!(consent(&opt_out, Some(false), &none, false), Err("unsubscribed"));
        assert_eq!(consent(&opt_in, None, &none, false), Err("no_consent"));
        assert_eq!(consent(&opt_in, Some(true), &none, false), Ok(()));
        let traits = |value: Value| value.as_object().unwrap().clone();
        assert_eq!(consent(&opt_in, None, &traits(json!({"subscriptions": {"Tips": true}})), false), Ok(()));
        assert_eq!(
            consent(&opt_in, Some(true), &traits(json!({"subscriptions": {"Tips": false}})), false),
            Err("unsubscribed")
        );
        assert_eq!(consent(&opt_out, None, &traits(json!({"unsubscribed": true})), false), Err("unsubscribed"));
    }

    #[test]
    fn quiet_hours_end_today_or_tomorrow() {
        let tz = TimeZone::get("Europe/Paris").unwrap();
        let at = |text: &str| text.parse::<Timestamp>().unwrap();
        let (night, morning) = (Time::constant(21, 0, 0, 0), Time::constant(8, 0, 0, 0));
        // 23:30 in Paris (summer, UTC+2): until 08:00 the next day.
        assert_eq!(quiet_until(at("2024-07-01T21:30:00Z"), &tz, night, morning), Some(at("2024-07-02T06:00:00Z")));
        // 03:00 in Paris: until 08:00 the same day.
        assert_eq!(quiet_until(at("2024-07-01T01:00:00Z"), &tz, night, morning), Some(at("2024-07-01T06:00:00Z")));
        assert_eq!(quiet_until(at("2024-07-01T10:00:00Z"), &tz, night, morning), None);
        let (lunch, after) = (Time::constant(12, 0, 0, 0), Time::constant(14, 0, 0, 0));
        assert_eq!(quiet_until(at("2024-07-01T10:30:00Z"), &tz, lunch, after), Some(at("2024-07-01T12:00:00Z")));
        assert_eq!(quiet_until(at("2024-07-01T12:00:00Z"), &tz, lunch, after), None);
    }

    #[test]
    fn links_are_signed_per_contact_and_topic() {
        let path = unsubscribe_path("k", 1, 2, 3);
        let signature = path.rsplit('/').next().unwrap();
        assert!(link_is_valid("k", 1, 2, 3, signature));
        assert!(!link_is_valid("k", 1, 2, 4, signature));
        assert!(!link_is_valid("other", 1, 2, 3, signature));
        assert!(!link_is_valid("k", 1, 2, 3, "00"));
    }
}
