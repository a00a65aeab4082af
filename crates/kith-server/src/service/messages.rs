//! Messages to contacts: templates (checked when saved, rendered in a sandbox), the consent a
//! message needs, signed unsubscribe links, the workspace's sender, its frequency cap and quiet
//! hours, what a `message` delivery turns into when its turn comes, the tracking of opens and
//! clicks (signed links), hard bounces, the email events sent back to Segment, and the counts
//! per template and rule.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::http::StatusCode;
use hmac::{Hmac, Mac};
use jiff::civil::Time;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use kith_core::event::{parse_value, EventType, Parsed};
use kith_core::identity::normalize_email;
use kith_core::rules::Action;
use kith_core::ParseContext;
use kith_store::deliveries::{
    EMAIL_BOUNCED, EMAIL_DELIVERED, EMAIL_LINK_CLICKED, EMAIL_MARKED_AS_SPAM, EMAIL_OPENED, UNSUBSCRIBED,
};
use kith_store::{
    Contact, ContactKey, Delivery, Engagement, Incoming, MessageCounts, MessageEntry, MessageLimits, NewMessageEntry,
    Sender, StatsBy, StoreError, Subscription, TemplateSpec, Topic, WorkspaceId,
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
    check_syntax(spec)
}

/// Refuses a part too long or with a syntax error (the message gives its line and column);
/// the error's field names the part. A draft is checked so before it is previewed.
pub fn check_syntax(spec: &TemplateSpec) -> ApiResult<()> {
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

/// A template, saved or not, rendered for a real contact as it would be sent now, with the
/// contact's real unsubscribe link (the event is empty: nothing triggered it).
pub async fn preview(
    state: &AppState,
    workspace: WorkspaceId,
    spec: &TemplateSpec,
    contact: &Contact,
) -> ApiResult<Rendered> {
    check_syntax(spec)?;
    let sender = sender(state, workspace).await?;
    let path = unsubscribe_path(&sender.link_secret, workspace, contact.id, spec.topic_id);
    let url = format!("{}{path}", state.web.config.public_url.as_deref().unwrap_or("").trim_end_matches('/'));
    let context = context(state, workspace, contact, None, &url).await?;
    render(spec, &context).map_err(|error| ApiError::bad_request("render_failed", "template", error))
}

/// Sends a template, saved or not, rendered for `contact`, to `to` at once, outside the outbox
/// and the message log: a test from the editor. The subject says it is a test, and the
/// unsubscribe link carries no valid signature, so whoever receives the test cannot unsubscribe
/// the contact it was rendered for. The inner error is why the SMTP server refused it.
pub async fn send_test(
    state: &AppState,
    workspace: WorkspaceId,
    spec: &TemplateSpec,
    contact: &Contact,
    to: &str,
) -> ApiResult<Result<String, String>> {
    let to = normalize_email(to).ok_or_else(|| {
        ApiError::bad_request("invalid_recipient", "test_to", format!("{to:?} is not an email address"))
    })?;
    check_syntax(spec)?;
    let sender = sender(state, workspace).await?;
    let base = state.web.config.public_url.as_deref().unwrap_or("").trim_end_matches('/');
    let unsubscribe_url = format!("{base}/unsubscribe/{workspace}/{}/{}/test", contact.id, spec.topic_id);
    let context = context(state, workspace, contact, None, &unsubscribe_url).await?;
    let mut rendered =
        render(spec, &context).map_err(|error| ApiError::bad_request("render_failed", "template", error))?;
    rendered.subject = format!("[Test] {}", rendered.subject);
    let outgoing = Outgoing { to: to.clone(), sender, rendered, unsubscribe_url };
    Ok(crate::jobs::delivery::send_now(state, &outgoing).await.map(|()| to))
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

/// A topic's name, trimmed, or why it cannot be one.
fn topic_name(name: &str) -> ApiResult<&str> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::bad_request("invalid_topic", "name", "a topic needs a name of 1 to 100 characters"));
    }
    Ok(name)
}

/// Creates a topic; 409 if the workspace has one of that name.
pub async fn create_topic(state: &AppState, workspace: WorkspaceId, name: &str, opt_in: bool) -> ApiResult<Topic> {
    Ok(state.store.create_topic(workspace, topic_name(name)?, opt_in).await?)
}

/// Renames a topic and sets whether it is opt-in (contacts' own choices stay); 404 if there is
/// no such topic, 409 if another has the name.
pub async fn update_topic(
    state: &AppState,
    workspace: WorkspaceId,
    id: i64,
    name: &str,
    opt_in: bool,
) -> ApiResult<Topic> {
    state
        .store
        .update_topic(workspace, id, topic_name(name)?, opt_in)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no topic {id}")))
}

/// Deletes a template; 409 naming the rules and journeys that send it (their messages would
/// fail, and the journey could not be saved again), 404 if there is none.
pub async fn delete_template(state: &AppState, workspace: WorkspaceId, id: i64) -> ApiResult<()> {
    let sends = |action: &Action| matches!(action, Action::Message { template } if *template == id);
    let mut users: Vec<String> = state
        .store
        .rules(workspace)
        .await?
        .into_iter()
        .filter(|rule| rule.spec.then.iter().any(sends))
        .map(|rule| format!("rule {}", rule.spec.name))
        .collect();
    users.extend(
        state
            .store
            .journeys(workspace)
            .await?
            .into_iter()
            .filter(|journey| journey.spec.steps.iter().any(|step| step.kind.action().as_ref().is_some_and(sends)))
            .map(|journey| format!("journey {}", journey.spec.name)),
    );
    if !users.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "template_in_use",
            format!("{} send this template; change them first", users.join(", ")),
        ));
    }
    if state.store.delete_template(workspace, id).await? {
        Ok(())
    } else {
        Err(ApiError::not_found(format!("no template {id}")))
    }
}

/// Deletes a topic and the contacts' choices about it; 409 naming the templates while any uses
/// it (their messages would have no topic to check consent against), 404 if there is none.
pub async fn delete_topic(state: &AppState, workspace: WorkspaceId, id: i64) -> ApiResult<()> {
    let users: Vec<String> = state
        .store
        .templates(workspace)
        .await?
        .into_iter()
        .filter(|template| template.spec.topic_id == id)
        .map(|template| template.spec.name)
        .collect();
    if !users.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "topic_in_use",
            format!("templates use this topic ({}); move them to another topic first", users.join(", ")),
        ));
    }
    if state.store.delete_topic(workspace, id).await? {
        Ok(())
    } else {
        Err(ApiError::not_found(format!("no topic {id}")))
    }
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

/// An HMAC-SHA256 of `what` under a workspace's link key, truncated to 128 bits, hex.
fn sign(secret: &str, what: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(what.as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..16])
}

/// Whether `given` is `expected`, compared in constant time.
fn same_signature(expected: &str, given: &str) -> bool {
    use subtle::ConstantTimeEq;
    expected.len() == given.len() && bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

/// The signature of an unsubscribe link: it names the workspace, contact and topic.
fn link_signature(secret: &str, workspace: WorkspaceId, contact: i64, topic: i64) -> String {
    sign(secret, &format!("unsubscribe|{workspace}|{contact}|{topic}"))
}

/// The path of a contact's unsubscribe link for a topic; it works without signing in.
pub fn unsubscribe_path(secret: &str, workspace: WorkspaceId, contact: i64, topic: i64) -> String {
    format!("/unsubscribe/{workspace}/{contact}/{topic}/{}", link_signature(secret, workspace, contact, topic))
}

/// Whether a link's signature is the one kith made, compared in constant time.
pub fn link_is_valid(secret: &str, workspace: WorkspaceId, contact: i64, topic: i64, signature: &str) -> bool {
    same_signature(&link_signature(secret, workspace, contact, topic), signature)
}

/// The link keys of workspaces, remembered: a key never changes once made, so a tracking
/// request with a bad signature costs no database work once its workspace's key is known.
/// Holds only workspaces that exist.
#[derive(Debug, Default)]
pub struct LinkKeys(Mutex<HashMap<WorkspaceId, Arc<str>>>);

/// The workspace's link key; `None` if there is no such workspace.
pub async fn link_key(state: &AppState, workspace: WorkspaceId) -> Result<Option<Arc<str>>, StoreError> {
    let known = state.link_keys.0.lock().unwrap_or_else(PoisonError::into_inner).get(&workspace).cloned();
    if let Some(key) = known {
        return Ok(Some(key));
    }
    if state.store.workspace(workspace).await?.is_none() {
        return Ok(None);
    }
    let key: Arc<str> = sender(state, workspace).await?.link_secret.into();
    state.link_keys.0.lock().unwrap_or_else(PoisonError::into_inner).insert(workspace, key.clone());
    Ok(Some(key))
}

/// A new `email_id`: 128 random bits, hex. The tracking links of a message carry it.
fn new_email_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Whether `text` could be an `email_id` or a signature (32 lowercase hex digits): anything else
/// is refused before any lookup.
pub fn is_token(text: &str) -> bool {
    text.len() == 32 && text.bytes().all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
}

/// The path of a message's open pixel.
pub fn open_path(secret: &str, workspace: WorkspaceId, email_id: &str) -> String {
    format!("/m/{workspace}/{email_id}/open/{}", sign(secret, &format!("open|{workspace}|{email_id}")))
}

/// Whether an open pixel's signature is the one kith made.
pub fn open_is_valid(secret: &str, workspace: WorkspaceId, email_id: &str, signature: &str) -> bool {
    same_signature(&sign(secret, &format!("open|{workspace}|{email_id}")), signature)
}

/// The path of a tracked link to `url`: the signature covers the URL, so the link leads only
/// where the message pointed.
pub fn click_path(secret: &str, workspace: WorkspaceId, email_id: &str, url: &str) -> String {
    let signature = sign(secret, &format!("click|{workspace}|{email_id}|{url}"));
    let url = percent_encoding::utf8_percent_encode(url, QUERY_VALUE);
    format!("/m/{workspace}/{email_id}/click/{signature}?url={url}")
}

/// What a URL in a query value is encoded with: everything but RFC 3986's unreserved characters.
const QUERY_VALUE: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Whether a tracked link's signature is the one kith made for this URL.
pub fn click_is_valid(secret: &str, workspace: WorkspaceId, email_id: &str, url: &str, signature: &str) -> bool {
    same_signature(&sign(secret, &format!("click|{workspace}|{email_id}|{url}")), signature)
}

/// Whether a link may be tracked and followed: an absolute http or https URL.
pub fn is_web_url(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|parsed| matches!(parsed.scheme(), "http" | "https") && parsed.has_host())
}

/// The HTML of a message as sent: every http(s) link of an `<a>` or `<area>` (but the
/// unsubscribe link, which must work as it is) turned into a signed click link, and the open
/// pixel added before `</body>` (else at the end). `base` is kith's public URL.
pub fn track_html(
    html: &str,
    base: &str,
    secret: &str,
    workspace: WorkspaceId,
    email_id: &str,
    unsubscribe_url: &str,
) -> String {
    if html.trim().is_empty() {
        return html.to_owned();
    }
    let mut out = rewrite_links(html, |url| {
        (url != unsubscribe_url && is_web_url(url))
            .then(|| format!("{base}{}", click_path(secret, workspace, email_id, url)))
    });
    let pixel = format!(
        "<img src=\"{base}{}\" width=\"1\" height=\"1\" alt=\"\" style=\"border:0;width:1px;height:1px\">",
        open_path(secret, workspace, email_id)
    );
    match out.to_ascii_lowercase().rfind("</body") {
        Some(at) => out.insert_str(at, &pixel),
        None => out.push_str(&pixel),
    }
    out
}

/// `html` with the `href` of each `<a>` and `<area>` tag replaced by what `rewrite` makes of its
/// URL (entities decoded); links it returns `None` for stay as they are.
fn rewrite_links(html: &str, mut rewrite: impl FnMut(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(html.len() + 512);
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        out.push_str(&rest[..open]);
        rest = &rest[open..];
        let end = tag_end(rest);
        let tag = &rest[..end];
        match href_of_link(tag) {
            Some(span) => match rewrite(&decode_entities(&tag[span.value.clone()])) {
                Some(url) => {
                    out.push_str(&tag[..span.whole.start]);
                    out.push_str("href=\"");
                    out.push_str(&url.replace('&', "&amp;").replace('"', "&quot;"));
                    out.push('"');
                    out.push_str(&tag[span.whole.end..]);
                }
                None => out.push_str(tag),
            },
            None => out.push_str(tag),
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// The length of the tag `text` starts with, through its `>` (quotes respected), or all of it.
fn tag_end(text: &str) -> usize {
    let mut quote = None;
    for (at, byte) in text.bytes().enumerate().skip(1) {
        match (quote, byte) {
            (None, b'"' | b'\'') => quote = Some(byte),
            (Some(open), _) if byte == open => quote = None,
            (None, b'>') => return at + 1,
            _ => {}
        }
    }
    text.len()
}

/// Where an `href` attribute sits in a tag: the whole `href=…` and its value without quotes.
struct HrefSpan {
    whole: std::ops::Range<usize>,
    value: std::ops::Range<usize>,
}

/// The `href` of an `<a>` or `<area>` tag.
fn href_of_link(tag: &str) -> Option<HrefSpan> {
    let bytes = tag.as_bytes();
    let name_end = bytes.iter().skip(1).position(|b| b.is_ascii_whitespace() || *b == b'>' || *b == b'/')? + 1;
    let name = &tag[1..name_end];
    if !name.eq_ignore_ascii_case("a") && !name.eq_ignore_ascii_case("area") {
        return None;
    }
    let mut at = name_end;
    while at < bytes.len() {
        while at < bytes.len() && (bytes[at].is_ascii_whitespace() || bytes[at] == b'/') {
            at += 1;
        }
        let start = at;
        while at < bytes.len() && !bytes[at].is_ascii_whitespace() && !matches!(bytes[at], b'=' | b'>' | b'/') {
            at += 1;
        }
        if at == start {
            return None;
        }
        let attribute = &tag[start..at];
        while at < bytes.len() && bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        if bytes.get(at) != Some(&b'=') {
            continue;
        }
        at += 1;
        while at < bytes.len() && bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        let value = match bytes.get(at) {
            Some(&quote @ (b'"' | b'\'')) => {
                let close = tag[at + 1..].find(quote as char)? + at + 1;
                let value = at + 1..close;
                at = close + 1;
                value
            }
            _ => {
                let begin = at;
                while at < bytes.len() && !bytes[at].is_ascii_whitespace() && bytes[at] != b'>' {
                    at += 1;
                }
                begin..at
            }
        };
        if attribute.eq_ignore_ascii_case("href") {
            return Some(HrefSpan { whole: start..at, value });
        }
    }
    None
}

/// An attribute value with its character references decoded (`&amp;`, `&#x2f;`, `&#47;`…), as a
/// browser reads it: minijinja escapes `/` and `&` in the values it fills in.
fn decode_entities(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let decoded = rest.find(';').filter(|end| *end <= 10).and_then(|end| {
            let name = &rest[1..end];
            let character = match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => name
                    .strip_prefix("#x")
                    .or_else(|| name.strip_prefix("#X"))
                    .map(|hex| u32::from_str_radix(hex, 16))
                    .or_else(|| name.strip_prefix('#').map(str::parse::<u32>))
                    .and_then(Result::ok)
                    .and_then(char::from_u32),
            };
            character.map(|character| (character, end + 1))
        });
        match decoded {
            Some((character, length)) => {
                out.push(character);
                rest = &rest[length..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// A contact's preferences: every topic and whether messages of it would reach the contact.
pub async fn preferences(
    state: &AppState,
    workspace: WorkspaceId,
    contact: &Contact,
) -> Result<Vec<(Topic, bool)>, StoreError> {
    Ok(consents(state, workspace, contact)
        .await?
        .into_iter()
        .map(|consent| (consent.topic, consent.allowed.is_ok()))
        .collect())
}

/// Where a contact stands on a topic.
#[derive(Debug, Clone)]
pub struct TopicConsent {
    pub topic: Topic,
    /// The contact's own choice (preferences page, unsubscribe link, or someone of the team).
    pub choice: Option<bool>,
    /// Whether a message of the topic would go now, or why not (`suppressed`, `unsubscribed`,
    /// `no_consent`).
    pub allowed: Result<(), &'static str>,
}

/// Every topic with the contact's choice and what it comes to, traits and suppression counted.
pub async fn consents(
    state: &AppState,
    workspace: WorkspaceId,
    contact: &Contact,
) -> Result<Vec<TopicConsent>, StoreError> {
    let topics = state.store.topics(workspace).await?;
    let choices = state.store.subscriptions(workspace, contact.id).await?;
    let suppressed = suppressed(state, workspace, contact).await?;
    Ok(topics
        .into_iter()
        .map(|topic| {
            let choice = choice_of(&choices, topic.id);
            let allowed = consent(&topic, choice, &contact.traits, suppressed);
            TopicConsent { topic, choice, allowed }
        })
        .collect())
}

/// Whether messages may not reach the contact at all: its email is on the suppression list
/// (erased with suppression), its address bounced, or it complained. kith learns of a
/// complaint as the email provider reports it through Segment: an `Email Marked as Spam`
/// track in the contact's event stream.
async fn suppressed(state: &AppState, workspace: WorkspaceId, contact: &Contact) -> Result<bool, StoreError> {
    Ok(state.store.is_suppressed(workspace, &contact.email).await?
        || state.store.is_bounced(workspace, contact.id, &contact.email).await?
        || state.store.has_track(workspace, contact.id, EMAIL_MARKED_AS_SPAM).await?)
}

/// Records a choice about a topic for a contact, made by someone of the team; 404 for a topic
/// the workspace does not have.
pub async fn set_choice(
    state: &AppState,
    workspace: WorkspaceId,
    contact: &Contact,
    topic: i64,
    subscribed: bool,
) -> ApiResult<()> {
    if !state.store.topics(workspace).await?.iter().any(|known| known.id == topic) {
        return Err(ApiError::not_found(format!("no topic {topic}")));
    }
    Ok(state.store.set_subscription(workspace, contact.id, topic, subscribed, state.clock.now()).await?)
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
    /// Due inside the contact's quiet hours: it waits until they end, recorded as `held`.
    Hold(Timestamp, NewMessageEntry),
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
        topic_id: Some(topic.id),
        delivery_id: Some(delivery.id),
        outcome: "sent".into(),
        reason: None,
        at: now,
        send_at: None,
        email_id: None,
        subject: None,
    };
    let choices = state.store.subscriptions(workspace, contact_id).await?;
    let suppressed = suppressed(state, workspace, &contact).await?;
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
            entry.outcome = "held".into();
            entry.send_at = Some(until);
            return Ok(Prepared::Hold(until, entry));
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
    let base = base.trim_end_matches('/');
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
        Ok(mut rendered) => {
            let email_id = new_email_id();
            rendered.html =
                track_html(&rendered.html, base, &sender.link_secret, workspace, &email_id, &unsubscribe_url);
            entry.email_id = Some(email_id);
            entry.subject = Some(rendered.subject.clone());
            Ok(Prepared::Send(
                Box::new(Outgoing { to: contact.email.clone(), sender, rendered, unsubscribe_url }),
                entry,
            ))
        }
        Err(error) => Ok(Prepared::Fail(format!("template {template_id}: {error}"))),
    }
}

/// Opens, and clicks, counted per message at most. Past it a pixel or link still answers, but
/// nothing is recorded, sent to Segment or ingested: a link forwarded to a crowd, or fetched in
/// a loop, costs one signature check and one statement per request.
pub const MAX_ENGAGEMENTS: i64 = 100;

/// Queues the email event `event` about a message for the workspace's outbound Segment host, if
/// one is configured: the properties of Segment's email spec (`email_id`, `email_subject`,
/// `campaign_id` and `campaign_name`: the rule that sent it, else its template), the template and
/// topic, and `extra`.
pub async fn email_event(
    state: &AppState,
    workspace: WorkspaceId,
    message: &NewMessageEntry,
    event: &str,
    extra: Map<String, Value>,
    at: Timestamp,
) -> Result<(), StoreError> {
    if !state.store.workspace(workspace).await?.is_some_and(|workspace| workspace.sends_to_segment()) {
        return Ok(());
    }
    let template = state.store.template(workspace, message.template_id).await?;
    let template_name = template.map(|template| template.spec.name);
    let rule = match message.rule_id {
        Some(id) => state.store.rule(workspace, id).await?.map(|rule| (id, rule.spec.name)),
        None => None,
    };
    let (campaign_id, campaign_name) = match rule {
        Some((id, name)) => (format!("rule-{id}"), Some(name)),
        None => (format!("template-{}", message.template_id), template_name.clone()),
    };
    let mut properties = Map::new();
    properties.insert("email_id".into(), json!(message.email_id));
    properties.insert("email_subject".into(), json!(message.subject));
    properties.insert("campaign_id".into(), json!(campaign_id));
    properties.insert("campaign_name".into(), json!(campaign_name));
    properties.insert("template_id".into(), json!(message.template_id));
    properties.insert("template_name".into(), json!(template_name));
    properties.insert("rule_id".into(), json!(message.rule_id));
    properties.insert("topic_id".into(), json!(message.topic_id));
    properties.extend(extra);
    state.store.enqueue_track(workspace, message.contact_id, event, properties, at).await
}

/// A message the mail server took: recorded as sent, reported as `Email Delivered`.
pub async fn delivered(state: &AppState, workspace: WorkspaceId, entry: NewMessageEntry) -> Result<(), StoreError> {
    state.store.record_message(workspace, entry.clone()).await?;
    email_event(state, workspace, &entry, EMAIL_DELIVERED, Map::new(), entry.at).await
}

/// A message whose address the mail server refused for good: recorded as bounced with the
/// server's reply, the contact's address is not sent messages again, reported as
/// `Email Bounced`.
pub async fn bounced(
    state: &AppState,
    workspace: WorkspaceId,
    mut entry: NewMessageEntry,
    email: &str,
    reply: &str,
) -> Result<(), StoreError> {
    entry.outcome = "bounced".into();
    entry.reason = Some(reply.to_owned());
    state.store.record_message(workspace, entry.clone()).await?;
    state.store.record_bounce(workspace, entry.contact_id, email, reply, entry.at).await?;
    let mut extra = Map::new();
    extra.insert("reason".into(), json!(reply));
    email_event(state, workspace, &entry, EMAIL_BOUNCED, extra, entry.at).await
}

/// A contact unsubscribed from a topic (one-click, or the preferences page): the latest message
/// of the topic they received is marked as followed by an unsubscribe and reported as
/// `Unsubscribed`. Nothing is reported when no message of the topic reached them.
pub async fn unsubscribed(
    state: &AppState,
    workspace: WorkspaceId,
    contact: i64,
    topic: i64,
    at: Timestamp,
) -> Result<(), StoreError> {
    let Some(message) = state.store.record_unsubscribe(workspace, contact, topic, at).await? else {
        return Ok(());
    };
    email_event(state, workspace, &message.entry, UNSUBSCRIBED, Map::new(), at).await
}

/// An open or a click of a tracked message (its signature already checked). The first open is
/// reported as `Email Opened`; every click as `Email Link Clicked`, and ingested as that track
/// event of the contact, so that it counts as product activity through the same path and day
/// rule as any event.
pub async fn engaged(
    state: &AppState,
    workspace: WorkspaceId,
    email_id: &str,
    engagement: Engagement,
    link: Option<&str>,
) -> Result<(), StoreError> {
    let now = state.clock.now();
    let Some(message) = state.store.record_engagement(workspace, email_id, engagement, now, MAX_ENGAGEMENTS).await?
    else {
        return Ok(());
    };
    match engagement {
        Engagement::Open if message.activity.opens == 1 => {
            email_event(state, workspace, &message.entry, EMAIL_OPENED, Map::new(), now).await
        }
        Engagement::Open => Ok(()),
        Engagement::Click => {
            let mut extra = Map::new();
            extra.insert("link_url".into(), json!(link));
            email_event(state, workspace, &message.entry, EMAIL_LINK_CLICKED, extra.clone(), now).await?;
            extra.insert("email_id".into(), json!(email_id));
            ingest_click(state, workspace, &message, extra, now).await
        }
    }
}

/// Ingests a click as the contact's `Email Link Clicked` track, through the ingest pipeline:
/// its messageId names the message and the click, so a retried request is not counted twice.
async fn ingest_click(
    state: &AppState,
    workspace: WorkspaceId,
    message: &MessageEntry,
    properties: Map<String, Value>,
    now: Timestamp,
) -> Result<(), StoreError> {
    let Some(contact) = state.store.contact(workspace, ContactKey::Id(message.entry.contact_id)).await? else {
        return Ok(());
    };
    let identities = state.store.identities(workspace, contact.id).await?;
    let user_id = identities.iter().find(|identity| identity.kind == "user_id").map(|identity| &identity.value);
    let mut track = json!({
        "type": "track",
        "event": EMAIL_LINK_CLICKED,
        "properties": properties,
        "context": {"traits": {"email": contact.email}},
        "messageId": format!("kith-click-{}-{}", message.entry.email_id.as_deref().unwrap_or_default(), message.activity.clicks),
        "timestamp": now.to_string(),
    });
    if let Some(user_id) = user_id {
        track["userId"] = json!(user_id);
    }
    let event = match parse_value(&track, &ParseContext::live(Some(EventType::Track), now)) {
        Ok(Parsed::Event(event)) => event,
        Ok(Parsed::Skipped) => return Ok(()),
        Err(rejection) => {
            tracing::warn!(message = %rejection.message, "a click could not be read as an event");
            return Ok(());
        }
    };
    // The person is on their way to the link: a full queue loses the activity, not the visit.
    if let Err(error) = state.pipeline.submit(vec![Incoming::new(workspace, *event)]).await {
        tracing::warn!(%error, "a click was not counted as activity");
    }
    Ok(())
}

/// What became of the messages of one template or rule, with its name.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    /// The template's or rule's id.
    pub id: i64,
    /// Its name; `None` for one deleted since.
    pub name: Option<String>,
    pub counts: MessageCounts,
}

/// The counts of every template (or rule) of the workspace, those without messages too, then
/// those deleted since that still have some.
pub async fn stats(state: &AppState, workspace: WorkspaceId, by: StatsBy) -> Result<Vec<Stats>, StoreError> {
    let mut counts: HashMap<i64, MessageCounts> = state.store.message_stats(workspace, by).await?.into_iter().collect();
    let named: Vec<(i64, String)> = match by {
        StatsBy::Template => state
            .store
            .templates(workspace)
            .await?
            .into_iter()
            .map(|template| (template.id, template.spec.name))
            .collect(),
        StatsBy::Rule => {
            state.store.rules(workspace).await?.into_iter().map(|rule| (rule.id, rule.spec.name)).collect()
        }
    };
    let mut out: Vec<Stats> = named
        .into_iter()
        .map(|(id, name)| Stats { id, name: Some(name), counts: counts.remove(&id).unwrap_or_default() })
        .collect();
    let mut gone: Vec<Stats> = counts.into_iter().map(|(id, counts)| Stats { id, name: None, counts }).collect();
    gone.sort_by_key(|stats| stats.id);
    out.extend(gone);
    Ok(out)
}

/// The counts of one template or rule; `None` if it does not exist.
pub async fn stats_of(
    state: &AppState,
    workspace: WorkspaceId,
    by: StatsBy,
    id: i64,
) -> Result<Option<Stats>, StoreError> {
    Ok(stats(state, workspace, by).await?.into_iter().find(|stats| stats.id == id && stats.name.is_some()))
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

    #[test]
    fn links_are_rewritten_to_signed_clicks_and_a_pixel_is_added() {
        let html = "<html><body><p class='x>y'>Hi <a class=\"b\" HREF='https:&#x2f;&#x2f;example.com&#x2f;a?x=1&amp;y=2'>go</a>\
                    <a href=\"https://k/unsubscribe/1\">stop</a> <a href=mailto:x@y.z>mail</a> <a name=top>t</a>\
                    <link href=\"https://cdn.example/s.css\"><area href=http://example.org/m></body></html>";
        let out = track_html(html, "https://k", "key", 1, "e1", "https://k/unsubscribe/1");
        let click = format!("https://k{}", click_path("key", 1, "e1", "https://example.com/a?x=1&y=2"));
        assert!(out.contains(&format!("<a class=\"b\" href=\"{}\">go</a>", click.replace('&', "&amp;"))), "{out}");
        assert!(out.contains("<a href=\"https://k/unsubscribe/1\">stop</a>"), "the unsubscribe link stays: {out}");
        assert!(out.contains("<a href=mailto:x@y.z>") && out.contains("<a name=top>"), "{out}");
        assert!(out.contains("<link href=\"https://cdn.example/s.css\">"), "only links are tracked: {out}");
        assert!(
            out.contains(&format!("<area href=\"https://k{}\">", click_path("key", 1, "e1", "http://example.org/m")))
        );
        assert!(out.contains("<p class='x>y'>"), "{out}");
        let pixel = format!("<img src=\"https://k{}\"", open_path("key", 1, "e1"));
        assert!(
            out.contains(&format!(
                "{pixel} width=\"1\" height=\"1\" alt=\"\" style=\"border:0;width:1px;height:1px\"></body>"
            )),
            "{out}"
        );
        assert_eq!(track_html("", "https://k", "key", 1, "e1", ""), "");
    }

    #[test]
    fn tracking_signatures_cover_the_message_and_the_url() {
        let path = click_path("key", 1, "e1", "https://example.com/");
        let signature = path.split(['/', '?']).nth(5).unwrap();
        assert!(click_is_valid("key", 1, "e1", "https://example.com/", signature));
        assert!(!click_is_valid("key", 1, "e1", "https://evil.example/", signature));
        assert!(!click_is_valid("key", 1, "e2", "https://example.com/", signature));
        assert!(!click_is_valid("other", 1, "e1", "https://example.com/", signature));
        let open = open_path("key", 1, "e1");
        let signature = open.rsplit('/').next().unwrap();
        assert!(open_is_valid("key", 1, "e1", signature) && !open_is_valid("key", 2, "e1", signature));
        assert!(is_token(signature) && !is_token("0") && !is_token(&"G".repeat(32)));
        assert!(is_web_url("https://example.com/x") && !is_web_url("javascript:alert(1)") && !is_web_url("/relative"));
    }
}
