//! Settings: the workspace (name, time zone, half-life), the sender of messages to contacts,
//! their frequency cap and quiet hours, the signing secret, the API keys, the signed-in user's
//! password and rebuilding the history.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use kith_store::{ApiKey, KeyKind, MessageLimits, Reprojection};
use maud::{html, Markup};
use serde::Deserialize;

use super::layout::{self, AlertKind, Nav};
use super::session::{Empty, Posted, Signed};
use super::signin::{self, PasswordChange};
use super::throttle::ClientAddress;
use super::{save_settings, WebError, WebResult};
use crate::service::history;
use crate::service::messages::{self, SenderChange};
use crate::service::settings::{self, WorkspaceChange};
use crate::service::users::MIN_PASSWORD_CHARS;
use crate::AppState;

/// What the page shows besides the settings.
#[derive(Default)]
struct Notice {
    /// A key just created: its full text, shown this once.
    created: Option<(ApiKey, String)>,
    /// Which form the message concerns, and whether it went wrong.
    message: Option<(Form, AlertKind, String)>,
    /// The limits as typed, shown again when refused.
    limits: Option<LimitsForm>,
    /// The field a refusal concerns.
    invalid: Option<String>,
}

impl Notice {
    /// What went wrong with a form.
    fn error(form: Form, message: impl Into<String>) -> Self {
        Notice { message: Some((form, AlertKind::Error, message.into())), ..Notice::default() }
    }

    /// What a form did.
    fn success(form: Form, message: impl Into<String>) -> Self {
        Notice { message: Some((form, AlertKind::Success, message.into())), ..Notice::default() }
    }
}

/// The forms of the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    Workspace,
    Sender,
    Limits,
    Secret,
    Keys,
    Password,
    Users,
    History,
}

/// `?password=changed` after a password change (the page is reached by a redirect, as the
/// change starts a new session).
#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    password: Option<String>,
}

/// `GET /settings`.
pub async fn page(
    State(state): State<AppState>,
    signed: Signed,
    headers: HeaderMap,
    Query(query): Query<PageQuery>,
) -> WebResult<Response> {
    let notice = if query.password.as_deref() == Some("changed") {
        Notice::success(Form::Password, "your password is changed; every other session is signed out.")
    } else {
        Notice::default()
    };
    render(&state, &signed, &headers, notice, StatusCode::OK).await
}

async fn render(
    state: &AppState,
    signed: &Signed,
    headers: &HeaderMap,
    notice: Notice,
    status: StatusCode,
) -> WebResult<Response> {
    let workspace = &signed.workspace;
    let tz = workspace.tz();
    let keys = state.store.keys(workspace.id).await?;
    let users = state.store.users(workspace.id).await?;
    let sender = messages::sender(state, workspace.id).await?;
    let reprojection = state.store.reprojection(workspace.id).await?;
    let limits_draft = match &notice.limits {
        Some(draft) => draft.clone(),
        None => LimitsForm::of(state.store.message_limits(workspace.id).await?),
    };
    let invalid = |field: &str| notice.invalid.as_deref().filter(|f| *f == field).map(|_| "true");
    let message_for = |form: Form| -> Markup {
        html! {
            @if let Some((_, kind, message)) = notice.message.as_ref().filter(|(f, _, _)| *f == form) {
                (layout::alert(*kind, message))
            }
        }
    };
    let body = html! {
        (layout::page_header("Settings", Some(html! { "Workspace " strong { (workspace.name) } ", signed in as " (signed.user.email) "." }), None))
        div.settings {
            section.card #keys aria-labelledby="keys-title" {
                h2 #keys-title { "API keys" }
                p.small.muted {
                    "A " strong { "write key" } " (kith_wk_…) only sends events and is safe in a web page. "
                    "A " strong { "secret key" } " (kith_sk_…) also reads the API: keep it on servers."
                }
                (message_for(Form::Keys))
                @if let Some((key, text)) = &notice.created {
                    div.new-key role="status" {
                        p { strong { "Copy your new " (key.kind.as_str()) " key now." } " kith keeps only its hash and will not show it again." }
                        div.code-block {
                            pre { code #new-key { (text) } }
                            button.button.button-small.copy type="button" data-copy=(text) aria-label="Copy the new key" { "Copy" }
                        }
                        @if key.kind == KeyKind::Write {
                            p.small { "Send an event with it:" }
                            (layout::code_block(&layout::first_event_curl(headers, state.clock.now()).replace("YOUR_WRITE_KEY", text), "Copy the curl command"))
                        }
                    }
                }
                div.table-wrap {
                    table.table.keys {
                        thead {
                            tr {
                                th scope="col" { "Name" }
                                th scope="col" { "Key" }
                                th.hide-sm scope="col" { "Created" }
                                th scope="col" { "Status" }
                            }
                        }
                        tbody {
                            @for key in &keys {
                                tr {
                                    td { (key.name) span.sub { (key.kind.as_str()) " key" } }
                                    td { code { (key.prefix) "…" } }
                                    td.hide-sm { (layout::time_tag(key.created_at, &tz)) }
                                    td {
                                        @if let Some(revoked) = key.revoked_at {
                                            span.tag.tag-out title=(layout::date_time(revoked, &tz)) { "revoked" }
                                        } @else {
                                            form method="post" action={ "/settings/keys/" (key.id) "/revoke" }
                                                data-confirm={ "Revoke " (key.name) "? Anything using it stops working at once." } {
                                                (layout::csrf(signed))
                                                button.button.button-small.button-danger type="submit" aria-label={ "Revoke " (key.name) } { "Revoke" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                form.inline-form.create-key method="post" action="/settings/keys" {
                    (layout::csrf(signed))
                    div.field {
                        label for="key-kind" { "Kind" }
                        select #key-kind name="kind" {
                            option value="write" { "Write key" }
                            option value="secret" { "Secret key" }
                        }
                    }
                    div.field.field-grow {
                        label for="key-name" { "Key name" }
                        input #key-name type="text" name="name" maxlength="100" placeholder="e.g. Marketing site";
                    }
                    div.field.field-actions { button.button.button-primary type="submit" { "Create key" } }
                }
            }
            section.card #workspace aria-labelledby="workspace-title" {
                h2 #workspace-title { "Workspace" }
                (message_for(Form::Workspace))
                @if let Some(region) = state.regions.of_workspace(workspace) {
                    p #ws-region {
                        "Region " strong { (region) } ": this workspace's data is stored and served in this region only, "
                        "and its keys carry it (" code { "kith_wk_" (region) "_…" } ")."
                        @if let Some(url) = state.regions.endpoints.get(&region) {
                            " Point its sources at " code { (url) } "."
                        }
                    }
                }
                form.stack method="post" action="/settings/workspace" {
                    (layout::csrf(signed))
                    div.field {
                        label for="ws-name" { "Name" }
                        input #ws-name type="text" name="name" value=(workspace.name) maxlength="200" required;
                    }
                    div.field {
                        label for="time-zone" { "Time zone" }
                        input #time-zone type="text" name="time_zone" value=(workspace.time_zone) list="time-zones"
                            autocomplete="off" spellcheck="false" required;
                        datalist #time-zones {
                            @for name in jiff::tz::db().available() { option value=(name.as_str()) {} }
                        }
                        p.hint {
                            "Days of the timeline (one activity per contact per day) are counted in this zone. "
                            "Changing it counts every day again from the stored events, in the background (see History)."
                        }
                    }
                    div.field {
                        label for="half-life" { "Closeness half-life (days)" }
                        input #half-life type="number" name="half_life_days" value=(workspace.half_life_days) min="1" max="3650" step="any" required;
                        p.hint { "How fast closeness fades without interactions. Changing it recomputes every contact." }
                    }
                    div { button.button.button-primary type="submit" { "Save workspace" } }
                }
            }
            section.card #history aria-labelledby="history-title" {
                h2 #history-title { "History" }
                (message_for(Form::History))
                p.small.muted {
                    "kith keeps every event it accepted. It can rebuild each contact's days, descriptions, hits and "
                    "closeness from them, as if they had arrived under today's settings."
                }
                (reprojection_status(reprojection.as_ref(), &tz))
                form method="post" action="/settings/reproject" {
                    (layout::csrf(signed))
                    button.button type="submit" { "Rebuild history now" }
                }
            }
            section.card #sender aria-labelledby="sender-title" {
                h2 #sender-title { "Sender" }
                (message_for(Form::Sender))
                form.stack method="post" action="/settings/sender" {
                    (layout::csrf(signed))
                    div.field {
                        label for="from-name" { "From name" }
                        input #from-name type="text" name="from_name" value=(sender.from_name.as_deref().unwrap_or("")) maxlength="100";
                    }
                    div.field {
                        label for="from-address" { "From address" }
                        input #from-address type="email" name="from_address" value=(sender.from_address.as_deref().unwrap_or(""));
                        p.hint { "Messages to contacts come from this address; the server's smtp_from when empty." }
                    }
                    div.field {
                        label for="reply-to" { "Reply-To" }
                        input #reply-to type="email" name="reply_to" value=(sender.reply_to.as_deref().unwrap_or(""));
                    }
                    div { button.button.button-primary type="submit" { "Save sender" } }
                }
            }
            section.card #limits aria-labelledby="limits-title" {
                h2 #limits-title { "Frequency cap and quiet hours" }
                (message_for(Form::Limits))
                p.small.muted { "Across every rule, for each contact. Leave a pair empty to turn it off." }
                form.stack method="post" action="/settings/limits" {
                    (layout::csrf(signed))
                    fieldset.plain-fieldset aria-describedby="cap-hint" {
                        legend { "Frequency cap" }
                        div.row {
                            div.field {
                                label for="cap-count" { "At most (messages)" }
                                input #cap-count type="number" name="cap_count" min="1" max="10000" inputmode="numeric"
                                    value=(limits_draft.cap_count) aria-invalid=[invalid("cap")];
                            }
                            div.field {
                                label for="cap-hours" { "Within (hours)" }
                                input #cap-hours type="number" name="cap_window_hours" min="1" max=(messages::MAX_CAP_WINDOW_HOURS)
                                    inputmode="numeric" value=(limits_draft.cap_window_hours) aria-invalid=[invalid("cap")];
                            }
                        }
                        p.hint #cap-hint { "A message over the cap is skipped, and the contact's messages say so." }
                    }
                    fieldset.plain-fieldset aria-describedby="quiet-hint" {
                        legend { "Quiet hours" }
                        div.row {
                            div.field {
                                label for="quiet-start" { "From" }
                                input #quiet-start type="time" name="quiet_start" value=(limits_draft.quiet_start) aria-invalid=[invalid("quiet_hours")];
                            }
                            div.field {
                                label for="quiet-end" { "Until" }
                                input #quiet-end type="time" name="quiet_end" value=(limits_draft.quiet_end) aria-invalid=[invalid("quiet_hours")];
                            }
                        }
                        p.hint #quiet-hint {
                            "In the contact's " code { "timezone" } " trait, else the workspace's (" (workspace.time_zone) "). "
                            "A message due then waits for the end."
                        }
                    }
                    div { button.button.button-primary type="submit" { "Save limits" } }
                }
            }
            section.card #signing aria-labelledby="signing-title" {
                h2 #signing-title { "Signing secret" }
                (message_for(Form::Secret))
                @if workspace.signing_secret_set {
                    p { span.tag.tag-in { "on" } " Ingest requests must carry " code { "X-Signature" } " (HMAC-SHA1 of the body), as Segment's Webhooks destination sends it." }
                } @else {
                    p { span.tag { "off" } " Requests are accepted with a key alone. Set the same shared secret here and in Segment to also require a signature." }
                }
                form.inline-form method="post" action="/settings/signing-secret" {
                    (layout::csrf(signed))
                    div.field.field-grow {
                        label for="secret" { "New secret" }
                        input #secret type="password" name="secret" autocomplete="new-password" required;
                    }
                    div.field.field-actions { button.button type="submit" { "Set secret" } }
                }
                @if workspace.signing_secret_set {
                    form method="post" action="/settings/signing-secret" {
                        (layout::csrf(signed))
                        input type="hidden" name="remove" value="1";
                        button.button.button-ghost.button-small type="submit" { "Remove the secret" }
                    }
                }
                h3 #array-bodies { "Array bodies" }
                p.hint {
                    "Segment's batching sends a JSON array of events and signs only its first event, so events "
                    "appended to a captured request would still pass the check. If your sender can deliver one "
                    "event per request (or a " code { "{\"batch\": [...]}" } " object, which is signed whole), "
                    "refuse array bodies."
                }
                @if workspace.refuse_array_bodies {
                    p { span.tag.tag-in { "refused" } " Array bodies are refused while a signing secret is set." }
                } @else {
                    p { span.tag { "accepted" } " Array bodies are accepted, checked against their first event's signature." }
                }
                form method="post" action="/settings/array-bodies" {
                    (layout::csrf(signed))
                    @if workspace.refuse_array_bodies {
                        input type="hidden" name="refuse" value="0";
                        button.button.button-ghost.button-small type="submit" { "Accept array bodies" }
                    } @else {
                        input type="hidden" name="refuse" value="1";
                        button.button.button-small type="submit" { "Refuse array bodies" }
                    }
                }
            }
            section.card #users aria-labelledby="users-title" {
                h2 #users-title { "People" }
                (message_for(Form::Users))
                p.muted { "Everyone who signs in to this workspace. Add people with " code { "kith users create --email …" } "." }
                div.table-wrap {
                    table.table.users {
                        thead { tr { th scope="col" { "Email" } th.hide-sm scope="col" { "Since" } th scope="col" { "" } } }
                        tbody {
                            @for user in &users {
                                tr {
                                    td { (user.email) }
                                    td.hide-sm { (layout::time_tag(user.created_at, &tz)) }
                                    td {
                                        @if user.id == signed.user.id {
                                            span.tag { "you" }
                                        } @else {
                                            form method="post" action={ "/settings/users/" (user.id) "/remove" }
                                                data-confirm={ "Remove " (user.email) "? They are signed out at once." } {
                                                (layout::csrf(signed))
                                                button.button.button-small.button-danger type="submit" aria-label={ "Remove " (user.email) } { "Remove" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            section.card #password aria-labelledby="password-title" {
                h2 #password-title { "Your password" }
                (message_for(Form::Password))
                p.muted { "Changing it signs you out everywhere else." }
                form method="post" action="/settings/password" {
                    (layout::csrf(signed))
                    input type="hidden" name="username" value=(signed.user.email) autocomplete="username";
                    div.field {
                        label for="current-password" { "Current password" }
                        input #current-password type="password" name="current_password" autocomplete="current-password" required;
                    }
                    div.field {
                        label for="new-password" { "New password" }
                        input #new-password type="password" name="new_password" autocomplete="new-password"
                            minlength=(MIN_PASSWORD_CHARS) required;
                    }
                    div { button.button type="submit" { "Change password" } }
                }
            }
        }
    };
    Ok(layout::page_with_status(signed, Nav::Settings, "Settings", status, body))
}

/// The workspace form.
#[derive(Debug, Default, Deserialize)]
pub struct WorkspaceForm {
    name: Option<String>,
    time_zone: Option<String>,
    half_life_days: Option<String>,
}

/// `POST /settings/workspace`.
pub async fn update_workspace(
    State(state): State<AppState>,
    headers: HeaderMap,
    Posted(signed, form): Posted<WorkspaceForm>,
) -> WebResult<Response> {
    let half_life = match form.half_life_days.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => None,
        Some(text) => match text.parse::<f64>() {
            Ok(days) if days.is_finite() => Some(days),
            _ => {
                let notice = Notice::error(Form::Workspace, "the half-life is a number of days, e.g. 30");
                return render(&state, &signed, &headers, notice, StatusCode::BAD_REQUEST).await;
            }
        },
    };
    let change = WorkspaceChange {
        name: form.name,
        time_zone: form.time_zone,
        half_life_days: half_life,
        ..WorkspaceChange::default()
    };
    save(&state, &headers, signed, change, Form::Workspace, "saved.").await
}

/// Where the latest rebuild of the history stands.
fn reprojection_status(reprojection: Option<&Reprojection>, tz: &jiff::tz::TimeZone) -> Markup {
    let Some(reprojection) = reprojection else {
        return html! { p #history-status { "The history has never needed rebuilding." } };
    };
    let percent = history::percent_done(reprojection);
    html! {
        @if reprojection.running() {
            p #history-status role="status" {
                "Rebuilding the history (" (reprojection.reason) "): " strong { (percent) " %" } ", "
                (reprojection.contacts_done) " of " (reprojection.contacts_total) " contacts, "
                (reprojection.events_done) " events so far. Reload the page to follow it."
            }
            progress max="100" value=(percent) aria-label="History rebuilt, in percent" {}
        } @else {
            p #history-status {
                "Rebuilt from " (reprojection.events_done) " events of " (reprojection.contacts_done) " contacts ("
                (reprojection.reason) "), finished "
                @if let Some(finished) = reprojection.finished_at { (layout::time_tag(finished, tz)) } "."
            }
        }
    }
}

/// `POST /settings/reproject`: rebuilds the history in the background.
pub async fn reproject(
    State(state): State<AppState>,
    headers: HeaderMap,
    Posted(signed, _): Posted<Empty>,
) -> WebResult<Response> {
    history::request(state.store.as_ref(), signed.workspace.id).await?;
    let notice = Notice::success(Form::History, "the history is being rebuilt in the background.");
    render(&state, &signed, &headers, notice, StatusCode::OK).await
}

/// The sender form.
#[derive(Debug, Default, Deserialize)]
pub struct SenderForm {
    from_name: Option<String>,
    from_address: Option<String>,
    reply_to: Option<String>,
}

/// `POST /settings/sender`.
pub async fn update_sender(
    State(state): State<AppState>,
    headers: HeaderMap,
    Posted(signed, form): Posted<SenderForm>,
) -> WebResult<Response> {
    let change = SenderChange { from_name: form.from_name, from_address: form.from_address, reply_to: form.reply_to };
    let (notice, status) = match messages::update_sender(&state, signed.workspace.id, change).await {
        Ok(_) => (Notice::success(Form::Sender, "saved."), StatusCode::OK),
        Err(error) if error.status.is_client_error() => {
            (Notice::error(Form::Sender, error.body.message), StatusCode::BAD_REQUEST)
        }
        Err(error) => return Err(error.into()),
    };
    render(&state, &signed, &headers, notice, status).await
}

/// The frequency-cap and quiet-hours form; an empty pair turns that limit off.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct LimitsForm {
    #[serde(default)]
    cap_count: String,
    #[serde(default)]
    cap_window_hours: String,
    #[serde(default)]
    quiet_start: String,
    #[serde(default)]
    quiet_end: String,
}

impl LimitsForm {
    fn of(limits: MessageLimits) -> Self {
        let number = |n: Option<i64>| n.map(|n| n.to_string()).unwrap_or_default();
        LimitsForm {
            cap_count: number(limits.cap_count),
            cap_window_hours: number(limits.cap_window_hours),
            quiet_start: limits.quiet_start.unwrap_or_default(),
            quiet_end: limits.quiet_end.unwrap_or_default(),
        }
    }

    /// The limits typed; `Err` when a cap field is not a whole number.
    fn limits(&self) -> Result<MessageLimits, ()> {
        let number = |text: &str| match text.trim() {
            "" => Ok(None),
            text => text.parse::<i64>().map(Some).map_err(|_| ()),
        };
        let time = |text: &str| Some(text.trim().to_owned()).filter(|t| !t.is_empty());
        Ok(MessageLimits {
            cap_count: number(&self.cap_count)?,
            cap_window_hours: number(&self.cap_window_hours)?,
            quiet_start: time(&self.quiet_start),
            quiet_end: time(&self.quiet_end),
        })
    }
}

/// `POST /settings/limits`.
pub async fn update_limits(
    State(state): State<AppState>,
    headers: HeaderMap,
    Posted(signed, form): Posted<LimitsForm>,
) -> WebResult<Response> {
    let refused = |field: &str, message: String| Notice {
        message: Some((Form::Limits, AlertKind::Error, message)),
        limits: Some(form.clone()),
        invalid: Some(field.to_owned()),
        ..Notice::default()
    };
    let (notice, status) = match form.limits() {
        Err(()) => (
            refused("cap", "a cap is a whole number of messages within a whole number of hours".into()),
            StatusCode::BAD_REQUEST,
        ),
        Ok(limits) => match messages::update_limits(&state, signed.workspace.id, limits).await {
            Ok(_) => (Notice::success(Form::Limits, "saved."), StatusCode::OK),
            Err(error) if error.status.is_client_error() => {
                let field = error.body.field.clone().unwrap_or_default();
                (refused(&field, error.body.message), StatusCode::BAD_REQUEST)
            }
            Err(error) => return Err(error.into()),
        },
    };
    render(&state, &signed, &headers, notice, status).await
}

/// Applies a change from one of the forms and shows the page with what came of it.
async fn save(
    state: &AppState,
    headers: &HeaderMap,
    mut signed: Signed,
    change: WorkspaceChange,
    form: Form,
    done: &str,
) -> WebResult<Response> {
    match save_settings(state, &signed.workspace, change).await? {
        Ok(updated) => {
            signed.workspace = updated;
            render(state, &signed, headers, Notice::success(form, done), StatusCode::OK).await
        }
        Err(message) => render(state, &signed, headers, Notice::error(form, message), StatusCode::BAD_REQUEST).await,
    }
}

/// The signing-secret form.
#[derive(Debug, Default, Deserialize)]
pub struct SecretForm {
    secret: Option<String>,
    remove: Option<String>,
}

/// `POST /settings/signing-secret`: sets or removes it.
pub async fn signing_secret(
    State(state): State<AppState>,
    headers: HeaderMap,
    Posted(signed, form): Posted<SecretForm>,
) -> WebResult<Response> {
    let secret = form.secret.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
    let (value, done) = match (form.remove.is_some(), secret) {
        (true, _) => (None, "the signing secret is removed; requests need only a key."),
        (false, Some(secret)) => (Some(secret), "the signing secret is set; unsigned requests are now refused."),
        (false, None) => {
            let notice = Notice::error(Form::Secret, "type the secret you set in Segment");
            return render(&state, &signed, &headers, notice, StatusCode::BAD_REQUEST).await;
        }
    };
    let change = WorkspaceChange { signing_secret: Some(value), ..WorkspaceChange::default() };
    save(&state, &headers, signed, change, Form::Secret, done).await
}

/// The array-bodies form.
#[derive(Debug, Default, Deserialize)]
pub struct ArrayBodiesForm {
    refuse: Option<String>,
}

/// `POST /settings/array-bodies`: refuses or accepts JSON-array bodies while signed.
pub async fn array_bodies(
    State(state): State<AppState>,
    headers: HeaderMap,
    Posted(signed, form): Posted<ArrayBodiesForm>,
) -> WebResult<Response> {
    let refuse = form.refuse.as_deref() == Some("1");
    let change = WorkspaceChange { refuse_array_bodies: Some(refuse), ..WorkspaceChange::default() };
    let done = if refuse {
        "array bodies are refused while a signing secret is set."
    } else {
        "array bodies are accepted again, checked against their first event's signature."
    };
    save(&state, &headers, signed, change, Form::Secret, done).await
}

/// The new-key form.
#[derive(Debug, Default, Deserialize)]
pub struct KeyForm {
    kind: Option<String>,
    name: Option<String>,
}

/// `POST /settings/keys`: creates a key and shows it this once (the answer is the page, not a
/// redirect, because the key's text exists nowhere else).
pub async fn create_key(
    State(state): State<AppState>,
    headers: HeaderMap,
    Posted(signed, form): Posted<KeyForm>,
) -> WebResult<Response> {
    let Some(kind) = form.kind.as_deref().and_then(KeyKind::parse) else {
        let notice = Notice::error(Form::Keys, "choose a write or a secret key");
        return render(&state, &signed, &headers, notice, StatusCode::BAD_REQUEST).await;
    };
    let name = form.name.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
    if name.as_ref().is_some_and(|name| name.chars().count() > 100) {
        let notice = Notice::error(Form::Keys, "a key name has at most 100 characters");
        return render(&state, &signed, &headers, notice, StatusCode::BAD_REQUEST).await;
    }
    let (key, text) = settings::create_key(&state, signed.workspace.id, kind, name).await?;
    tracing::info!(key = key.id, user = signed.user.id, "key created in the web app");
    let notice = Notice { created: Some((key, text)), ..Notice::default() };
    render(&state, &signed, &headers, notice, StatusCode::OK).await
}

/// `POST /settings/keys/{id}/revoke`: the key stops working at once on this node.
pub async fn revoke_key(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Posted(signed, _): Posted<Empty>,
) -> WebResult<Response> {
    if !settings::revoke_key(&state, signed.workspace.id, id).await? {
        return Err(WebError::not_found(format!("there is no key {id} in this workspace")));
    }
    tracing::info!(key = id, user = signed.user.id, "key revoked in the web app");
    Ok(Redirect::to("/settings#keys").into_response())
}

/// `POST /settings/users/{id}/remove`: removes another user of the workspace and ends their
/// sessions. Removing yourself is refused, so a workspace always keeps someone who can sign in.
pub async fn remove_user(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    Posted(signed, _): Posted<Empty>,
) -> WebResult<Response> {
    let users = state.store.users(signed.workspace.id).await?;
    let Some(user) = users.iter().find(|user| user.id == id) else {
        return Err(WebError::not_found(format!("there is no user {id} in this workspace")));
    };
    if user.id == signed.user.id {
        let notice = Notice::error(Form::Users, "you cannot remove yourself; another user of the workspace can.");
        return render(&state, &signed, &headers, notice, StatusCode::BAD_REQUEST).await;
    }
    state.store.delete_user(user.id).await?;
    tracing::info!(removed = user.id, user = signed.user.id, "user removed in the web app");
    Ok(Redirect::to("/settings#users").into_response())
}

/// The password form.
#[derive(Debug, Default, Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
}

/// `POST /settings/password`: changes the signed-in user's password.
pub async fn change_password(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    headers: HeaderMap,
    Posted(signed, form): Posted<PasswordForm>,
) -> WebResult<Response> {
    let redirect = "/settings?password=changed#password";
    let change = signin::change_password(
        &state,
        &headers,
        address,
        &signed,
        &form.current_password,
        &form.new_password,
        redirect,
    )
    .await?;
    match change {
        PasswordChange::Changed(response) => Ok(response),
        PasswordChange::Refused(status, message) => {
            let notice = Notice::error(Form::Password, message);
            render(&state, &signed, &headers, notice, status).await
        }
    }
}
