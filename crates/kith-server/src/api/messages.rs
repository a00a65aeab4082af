//! `/api/topics`, `/api/templates`, `/api/workspace/sender`, `/api/contacts/{id}/messages` and
//! the stats of templates and rules: messages to contacts — subscription topics, email templates
//! and their preview, the workspace's sender, what was sent to, held or skipped for a contact,
//! and what became of each template's and rule's messages.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use kith_store::{MessageEntry, MessageLimits, Sender, StatsBy, Template, TemplateSpec, Topic};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Body;
use crate::auth::SecretKey;
use crate::error::{ApiError, ApiResult};
use crate::service::contacts::find_contact;
use crate::service::messages::{self, check_template, SenderChange};
use crate::AppState;

/// A subscription topic.
#[derive(Debug, Serialize, ToSchema)]
pub struct TopicView {
    /// The topic's id, as in a template's `topic_id`.
    pub id: i64,
    /// The name contacts see on their preferences page.
    pub name: String,
    /// `true`: nothing is sent without the contact's yes; `false`: sent until the contact says no.
    pub opt_in: bool,
    /// When it was created (RFC 3339, UTC).
    pub created_at: String,
}

impl From<Topic> for TopicView {
    fn from(topic: Topic) -> Self {
        TopicView { id: topic.id, name: topic.name, opt_in: topic.opt_in, created_at: topic.created_at.to_string() }
    }
}

/// A new topic.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTopicBody {
    /// 1 to 100 characters, unique in the workspace.
    pub name: String,
    /// Whether contacts must opt in (default `false`: opt-out).
    #[serde(default)]
    pub opt_in: bool,
}

/// The workspace's topics.
#[utoipa::path(get, path = "/api/topics", tag = "messages",
    responses((status = 200, body = Vec<TopicView>)), security(("secret_key" = [])))]
pub async fn topics(State(state): State<AppState>, SecretKey(key): SecretKey) -> ApiResult<Json<Vec<TopicView>>> {
    Ok(Json(state.store.topics(key.workspace_id).await?.into_iter().map(Into::into).collect()))
}

/// Creates a topic.
#[utoipa::path(post, path = "/api/topics", tag = "messages", request_body = NewTopicBody,
    responses((status = 201, body = TopicView), (status = 400, body = crate::error::ErrorBody),
              (status = 409, body = crate::error::ErrorBody)),
    security(("secret_key" = [])))]
pub async fn create_topic(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    Body(body): Body<NewTopicBody>,
) -> ApiResult<(StatusCode, Json<TopicView>)> {
    let topic = messages::create_topic(&state, key.workspace_id, &body.name, body.opt_in).await?;
    Ok((StatusCode::CREATED, Json(topic.into())))
}

/// Renames a topic and sets whether it is opt-in; contacts' own choices stay.
#[utoipa::path(put, path = "/api/topics/{id}", tag = "messages", params(("id" = i64, Path)),
    request_body = NewTopicBody,
    responses((status = 200, body = TopicView), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)),
    security(("secret_key" = [])))]
pub async fn update_topic(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    Path(id): Path<i64>,
    Body(body): Body<NewTopicBody>,
) -> ApiResult<Json<TopicView>> {
    Ok(Json(messages::update_topic(&state, key.workspace_id, id, &body.name, body.opt_in).await?.into()))
}

/// Deletes a topic no template uses, with the contacts' choices about it.
#[utoipa::path(delete, path = "/api/topics/{id}", tag = "messages", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody),
              (status = 409, body = crate::error::ErrorBody)),
    security(("secret_key" = [])))]
pub async fn delete_topic(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    messages::delete_topic(&state, key.workspace_id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A template, as written.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateBody {
    /// A name people recognise.
    pub name: String,
    /// The topic its messages belong to.
    pub topic_id: i64,
    /// The subject line: a minijinja template over `contact`, `event`, `account`, `unsubscribe_url`.
    pub subject: String,
    /// The HTML body (values are HTML-escaped).
    pub html: String,
    /// The plain-text body.
    pub text: String,
}

impl From<TemplateBody> for TemplateSpec {
    fn from(body: TemplateBody) -> Self {
        TemplateSpec {
            name: body.name,
            topic_id: body.topic_id,
            subject: body.subject,
            html: body.html,
            text: body.text,
        }
    }
}

/// A stored template.
#[derive(Debug, Serialize, ToSchema)]
pub struct TemplateView {
    /// The template's id, as in a rule's `{"message": {"template": id}}`.
    pub id: i64,
    /// What it holds.
    #[serde(flatten)]
    pub template: TemplateBody,
    /// When it was created (RFC 3339, UTC).
    pub created_at: String,
    /// Last changed.
    pub updated_at: String,
}

impl From<Template> for TemplateView {
    fn from(template: Template) -> Self {
        let spec = template.spec;
        TemplateView {
            id: template.id,
            template: TemplateBody {
                name: spec.name,
                topic_id: spec.topic_id,
                subject: spec.subject,
                html: spec.html,
                text: spec.text,
            },
            created_at: template.created_at.to_string(),
            updated_at: template.updated_at.to_string(),
        }
    }
}

/// The workspace's templates.
#[utoipa::path(get, path = "/api/templates", tag = "messages",
    responses((status = 200, body = Vec<TemplateView>)), security(("secret_key" = [])))]
pub async fn templates(State(state): State<AppState>, SecretKey(key): SecretKey) -> ApiResult<Json<Vec<TemplateView>>> {
    Ok(Json(state.store.templates(key.workspace_id).await?.into_iter().map(Into::into).collect()))
}

/// Creates a template; a syntax error is refused with its line and column.
#[utoipa::path(post, path = "/api/templates", tag = "messages", request_body = TemplateBody,
    responses((status = 201, body = TemplateView), (status = 400, body = crate::error::ErrorBody)),
    security(("secret_key" = [])))]
pub async fn create_template(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    Body(body): Body<TemplateBody>,
) -> ApiResult<(StatusCode, Json<TemplateView>)> {
    let spec = TemplateSpec::from(body);
    check_template(&state, key.workspace_id, &spec).await?;
    let template = state.store.create_template(key.workspace_id, spec).await?;
    Ok((StatusCode::CREATED, Json(template.into())))
}

/// One template.
#[utoipa::path(get, path = "/api/templates/{id}", tag = "messages", params(("id" = i64, Path)),
    responses((status = 200, body = TemplateView), (status = 404, body = crate::error::ErrorBody)),
    security(("secret_key" = [])))]
pub async fn template(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    Path(id): Path<i64>,
) -> ApiResult<Json<TemplateView>> {
    let template = state
        .store
        .template(key.workspace_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no template {id}")))?;
    Ok(Json(template.into()))
}

/// Replaces a template.
#[utoipa::path(put, path = "/api/templates/{id}", tag = "messages", params(("id" = i64, Path)),
    request_body = TemplateBody,
    responses((status = 200, body = TemplateView), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)),
    security(("secret_key" = [])))]
pub async fn update_template(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    Path(id): Path<i64>,
    Body(body): Body<TemplateBody>,
) -> ApiResult<Json<TemplateView>> {
    let spec = TemplateSpec::from(body);
    check_template(&state, key.workspace_id, &spec).await?;
    let template = state
        .store
        .update_template(key.workspace_id, id, spec)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no template {id}")))?;
    Ok(Json(template.into()))
}

/// Deletes a template no rule or journey sends (409 `template_in_use` names them); messages
/// still queued for it fail visibly in `/api/deliveries`.
#[utoipa::path(delete, path = "/api/templates/{id}", tag = "messages", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody),
              (status = 409, body = crate::error::ErrorBody)), security(("secret_key" = [])))]
pub async fn delete_template(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    messages::delete_template(&state, key.workspace_id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Whom to preview a template for.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewBody {
    /// A contact's id or email.
    pub contact: String,
}

/// A template rendered for a contact.
#[derive(Debug, Serialize, ToSchema)]
pub struct PreviewView {
    pub subject: String,
    pub html: String,
    pub text: String,
}

/// Renders a template for a real contact, as it would be sent now (the event is empty: a
/// preview has no triggering event).
#[utoipa::path(post, path = "/api/templates/{id}/preview", tag = "messages", params(("id" = i64, Path)),
    request_body = PreviewBody,
    responses((status = 200, body = PreviewView), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)),
    security(("secret_key" = [])))]
pub async fn preview(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    Path(id): Path<i64>,
    Body(body): Body<PreviewBody>,
) -> ApiResult<Json<PreviewView>> {
    let workspace = key.workspace_id;
    let template =
        state.store.template(workspace, id).await?.ok_or_else(|| ApiError::not_found(format!("no template {id}")))?;
    let contact = find_contact(&state, workspace, body.contact.trim()).await?;
    let rendered = messages::preview(&state, workspace, &template.spec, &contact).await?;
    Ok(Json(PreviewView { subject: rendered.subject, html: rendered.html, text: rendered.text }))
}

/// Who messages come from.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SenderView {
    /// The display name of the From address.
    #[serde(default)]
    pub from_name: Option<String>,
    /// The From address; the server's `smtp_from` when unset.
    #[serde(default)]
    pub from_address: Option<String>,
    /// The Reply-To address.
    #[serde(default)]
    pub reply_to: Option<String>,
}

impl From<Sender> for SenderView {
    fn from(sender: Sender) -> Self {
        SenderView { from_name: sender.from_name, from_address: sender.from_address, reply_to: sender.reply_to }
    }
}

/// The workspace's sender.
#[utoipa::path(get, path = "/api/workspace/sender", tag = "messages",
    responses((status = 200, body = SenderView)), security(("secret_key" = [])))]
pub async fn sender(State(state): State<AppState>, SecretKey(key): SecretKey) -> ApiResult<Json<SenderView>> {
    Ok(Json(messages::sender(&state, key.workspace_id).await?.into()))
}

/// Replaces the workspace's sender; a field left out or empty is unset.
#[utoipa::path(put, path = "/api/workspace/sender", tag = "messages", request_body = SenderView,
    responses((status = 200, body = SenderView), (status = 400, body = crate::error::ErrorBody)),
    security(("secret_key" = [])))]
pub async fn set_sender(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    Body(body): Body<SenderView>,
) -> ApiResult<Json<SenderView>> {
    let change = SenderChange { from_name: body.from_name, from_address: body.from_address, reply_to: body.reply_to };
    Ok(Json(messages::update_sender(&state, key.workspace_id, change).await?.into()))
}

/// A frequency cap: at most `messages` per contact within `within_hours`, across rules.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CapView {
    pub messages: i64,
    pub within_hours: i64,
}

/// Quiet hours, "HH:MM" in the contact's `timezone` trait, else the workspace's time zone.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuietHoursView {
    pub start: String,
    pub end: String,
}

/// How many messages a contact may get, and when not.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsView {
    /// A message over the cap is skipped (reason `capped`); `null`: no cap.
    #[serde(default)]
    pub cap: Option<CapView>,
    /// A message due inside quiet hours waits for their end; `null`: none.
    #[serde(default)]
    pub quiet_hours: Option<QuietHoursView>,
}

impl From<MessageLimits> for LimitsView {
    fn from(limits: MessageLimits) -> Self {
        LimitsView {
            cap: limits
                .cap_count
                .zip(limits.cap_window_hours)
                .map(|(messages, within_hours)| CapView { messages, within_hours }),
            quiet_hours: limits.quiet_start.zip(limits.quiet_end).map(|(start, end)| QuietHoursView { start, end }),
        }
    }
}

/// The workspace's frequency cap and quiet hours.
#[utoipa::path(get, path = "/api/workspace/message-limits", tag = "messages",
    responses((status = 200, body = LimitsView)), security(("secret_key" = [])))]
pub async fn limits(State(state): State<AppState>, SecretKey(key): SecretKey) -> ApiResult<Json<LimitsView>> {
    Ok(Json(state.store.message_limits(key.workspace_id).await?.into()))
}

/// Replaces the frequency cap and quiet hours.
#[utoipa::path(put, path = "/api/workspace/message-limits", tag = "messages", request_body = LimitsView,
    responses((status = 200, body = LimitsView), (status = 400, body = crate::error::ErrorBody)),
    security(("secret_key" = [])))]
pub async fn set_limits(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    Body(body): Body<LimitsView>,
) -> ApiResult<Json<LimitsView>> {
    let limits = MessageLimits {
        cap_count: body.cap.as_ref().map(|cap| cap.messages),
        cap_window_hours: body.cap.as_ref().map(|cap| cap.within_hours),
        quiet_start: body.quiet_hours.as_ref().map(|quiet| quiet.start.clone()),
        quiet_end: body.quiet_hours.map(|quiet| quiet.end),
    };
    Ok(Json(messages::update_limits(&state, key.workspace_id, limits).await?.into()))
}

/// A message considered for a contact.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageView {
    pub id: i64,
    /// The rule that sent it.
    pub rule_id: Option<i64>,
    /// The template.
    pub template_id: i64,
    /// The template's topic (`null` for messages recorded before topics were logged).
    pub topic_id: Option<i64>,
    /// `sent` (the mail server took it), `bounced` (it refused the address for good), `held`
    /// (waiting for the end of the contact's quiet hours), `skipped`, or `failed` (held, then it
    /// could not be sent: the reason says why).
    pub outcome: String,
    /// Why it was skipped (`unsubscribed`, `suppressed`, `no_consent` or `capped`), or the mail
    /// server's reply to a bounced message.
    pub reason: Option<String>,
    /// When it was decided (RFC 3339, UTC).
    pub at: String,
    /// A held message: when it will go.
    pub send_at: Option<String>,
    /// A sent or bounced message: its id in the email events sent to Segment.
    pub email_id: Option<String>,
    /// A sent or bounced message: its subject.
    pub subject: Option<String>,
    /// The first open.
    pub opened_at: Option<String>,
    /// Opens counted.
    pub opens: i64,
    /// The first click on a link.
    pub clicked_at: Option<String>,
    /// Clicks counted.
    pub clicks: i64,
    /// When the contact unsubscribed from its topic after it.
    pub unsubscribed_at: Option<String>,
}

impl From<MessageEntry> for MessageView {
    fn from(message: MessageEntry) -> Self {
        let (entry, activity) = (message.entry, message.activity);
        let time = |at: Option<jiff::Timestamp>| at.map(|at| at.to_string());
        MessageView {
            id: message.id,
            rule_id: entry.rule_id,
            template_id: entry.template_id,
            topic_id: entry.topic_id,
            outcome: entry.outcome,
            reason: entry.reason,
            at: entry.at.to_string(),
            send_at: time(entry.send_at),
            email_id: entry.email_id,
            subject: entry.subject,
            opened_at: time(activity.opened_at),
            opens: activity.opens,
            clicked_at: time(activity.clicked_at),
            clicks: activity.clicks,
            unsubscribed_at: time(activity.unsubscribed_at),
        }
    }
}

/// Whether a topic's messages would reach the contact now.
#[derive(Debug, Serialize, ToSchema)]
pub struct PreferenceView {
    pub topic_id: i64,
    pub topic: String,
    pub opt_in: bool,
    /// What the contact's choices, traits and the suppression list allow.
    pub subscribed: bool,
}

/// A contact's messages and preferences.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContactMessages {
    /// Messages considered for the contact, newest first.
    pub messages: Vec<MessageView>,
    /// Every topic and whether the contact would get its messages.
    pub preferences: Vec<PreferenceView>,
}

/// The messages sent to or skipped for a contact, and its preferences.
#[utoipa::path(get, path = "/api/contacts/{id}/messages", tag = "messages", params(("id" = String, Path)),
    responses((status = 200, body = ContactMessages), (status = 404, body = crate::error::ErrorBody)),
    security(("secret_key" = [])))]
pub async fn contact_messages(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    Path(id): Path<String>,
) -> ApiResult<Json<ContactMessages>> {
    let workspace = key.workspace_id;
    let contact = find_contact(&state, workspace, &id).await?;
    let log = state.store.message_log(workspace, contact.id, 200).await?;
    let preferences = messages::preferences(&state, workspace, &contact).await?;
    Ok(Json(ContactMessages {
        messages: log.into_iter().map(Into::into).collect(),
        preferences: preferences
            .into_iter()
            .map(|(topic, subscribed)| PreferenceView {
                topic_id: topic.id,
                topic: topic.name,
                opt_in: topic.opt_in,
                subscribed,
            })
            .collect(),
    }))
}

/// What became of the messages of a template or a rule.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatsView {
    /// The template's or rule's id.
    pub id: i64,
    /// Its name.
    pub name: Option<String>,
    /// Handed to the mail server: delivered or bounced.
    pub sent: i64,
    /// Taken by the mail server.
    pub delivered: i64,
    /// Opened at least once (the tracking pixel was fetched).
    pub opened: i64,
    /// A link followed at least once.
    pub clicked: i64,
    /// Followed by an unsubscribe from their topic.
    pub unsubscribed: i64,
    /// The address refused for good by the mail server.
    pub bounced: i64,
    /// Not sent: consent, suppression or the frequency cap.
    pub skipped: i64,
    /// Waiting for the end of the contact's quiet hours.
    pub held: i64,
}

impl From<messages::Stats> for StatsView {
    fn from(stats: messages::Stats) -> Self {
        let counts = stats.counts;
        StatsView {
            id: stats.id,
            name: stats.name,
            sent: counts.sent,
            delivered: counts.delivered,
            opened: counts.opened,
            clicked: counts.clicked,
            unsubscribed: counts.unsubscribed,
            bounced: counts.bounced,
            skipped: counts.skipped,
            held: counts.held,
        }
    }
}

/// What became of a template's messages.
#[utoipa::path(get, path = "/api/templates/{id}/stats", tag = "messages", params(("id" = i64, Path)),
    responses((status = 200, body = StatsView), (status = 404, body = crate::error::ErrorBody)),
    security(("secret_key" = [])))]
pub async fn template_stats(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    Path(id): Path<i64>,
) -> ApiResult<Json<StatsView>> {
    let stats = messages::stats_of(&state, key.workspace_id, StatsBy::Template, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no template {id}")))?;
    Ok(Json(stats.into()))
}

/// What became of the messages a rule sent.
#[utoipa::path(get, path = "/api/rules/{id}/stats", tag = "messages", params(("id" = i64, Path)),
    responses((status = 200, body = StatsView), (status = 404, body = crate::error::ErrorBody)),
    security(("secret_key" = [])))]
pub async fn rule_stats(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    Path(id): Path<i64>,
) -> ApiResult<Json<StatsView>> {
    let stats = messages::stats_of(&state, key.workspace_id, StatsBy::Rule, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no rule {id}")))?;
    Ok(Json(stats.into()))
}
