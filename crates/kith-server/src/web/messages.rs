//! Messages to contacts: the templates (list, editor with a preview for a real contact and a
//! test send) and the subscription topics their messages belong to.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use kith_store::{Contact, Template, TemplateSpec, Topic};
use maud::{html, Markup};
use serde::Deserialize;

use super::layout::{self, AlertKind, Nav};
use super::session::{Empty, Posted, Signed};
use super::{WebError, WebResult};
use crate::error::ApiError;
use crate::service::contacts::pick_contact;
use crate::service::messages::{self, check_template, Rendered};
use crate::AppState;

/// The page's policy as every page's (`super::security_headers`), but letting inline styles
/// through: the preview shows an email's HTML, whose styles are inline, in a sandboxed
/// `srcdoc` frame that inherits this policy. Scripts stay refused, in the frame too.
const EDITOR_POLICY: &str = "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: https:; \
                             frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

/// What the topics card says after a change, and the name typed for a new topic.
#[derive(Default)]
struct TopicNotice {
    message: Option<(AlertKind, String)>,
    draft: Option<String>,
}

/// `GET /messages`: the templates and the topics.
pub async fn page(State(state): State<AppState>, signed: Signed) -> WebResult<Response> {
    render(&state, &signed, TopicNotice::default(), StatusCode::OK).await
}

async fn render(state: &AppState, signed: &Signed, notice: TopicNotice, status: StatusCode) -> WebResult<Response> {
    let workspace = &signed.workspace;
    let tz = workspace.tz();
    let templates = state.store.templates(workspace.id).await?;
    let topics: Vec<Topic> = state.store.topics(workspace.id).await?;
    let topic_name = |id: i64| topics.iter().find(|topic| topic.id == id).map_or("—", |topic| topic.name.as_str());
    let body = html! {
        (layout::page_header(
            "Messages",
            Some(html! { "Email your contacts from templates, sent by nudge rules, within their consent." }),
            Some(html! {
                a.button href="/messages/stats" { "Stats" }
                " "
                a.button.button-primary href="/messages/templates/new" { "New template" }
            }),
        ))
        div.settings {
            section.card #templates aria-labelledby="templates-title" {
                h2 #templates-title { "Templates" }
                @if templates.is_empty() {
                    p.muted {
                        "No template yet. "
                        @if topics.is_empty() { "Create a topic below first: every message belongs to one. " }
                        a href="/messages/templates/new" { "Write the first template" } "."
                    }
                } @else {
                    div.table-wrap {
                        table.table {
                            thead { tr { th scope="col" { "Template" } th scope="col" { "Topic" } th.hide-sm scope="col" { "Changed" } th scope="col" { "" } } }
                            tbody {
                                @for template in &templates {
                                    tr {
                                        td {
                                            a href={ "/messages/templates/" (template.id) } { strong { (template.spec.name) } }
                                            span.sub { "#" (template.id) " · " (template.spec.subject) }
                                        }
                                        td { (topic_name(template.spec.topic_id)) }
                                        td.hide-sm { (layout::time_tag(template.updated_at, &tz)) }
                                        td {
                                            a.button.button-small href={ "/messages/templates/" (template.id) } aria-label={ "Edit " (template.spec.name) } { "Edit" }
                                            " "
                                            form.inline method="post" action={ "/messages/templates/" (template.id) "/delete" }
                                                data-confirm={ "Delete the template " (template.spec.name) "? Rules that send it will fail until they send another." } {
                                                (layout::csrf(signed))
                                                button.button.button-small.button-danger type="submit" aria-label={ "Delete " (template.spec.name) } { "Delete" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            section.card #topics aria-labelledby="topics-title" {
                h2 #topics-title { "Topics" }
                @if let Some((kind, message)) = &notice.message { (layout::alert(*kind, message)) }
                p.small.muted {
                    "Every message belongs to a topic; contacts choose theirs on the preferences page their "
                    "unsubscribe link opens. An " strong { "opt-out" } " topic is sent until the contact says no; an "
                    strong { "opt-in" } " topic only once the contact said yes (on that page, or with the "
                    code { "subscriptions" } " trait)."
                }
                @if !topics.is_empty() {
                    div.table-wrap {
                        table.table {
                            thead { tr { th scope="col" { "Topic" } th scope="col" { "Default" } th scope="col" { "" } th scope="col" { "" } } }
                            tbody {
                                @for topic in &topics {
                                    @let form_id = format!("topic-{}", topic.id);
                                    tr {
                                        td {
                                            form id=(form_id) method="post" action={ "/messages/topics/" (topic.id) } {
                                                (layout::csrf(signed))
                                            }
                                            label.visually-hidden for={ (form_id) "-name" } { "Name of topic " (topic.name) }
                                            input id={ (form_id) "-name" } form=(form_id) type="text" name="name" value=(topic.name) maxlength="100" required;
                                        }
                                        td {
                                            label.visually-hidden for={ (form_id) "-consent" } { "Default of topic " (topic.name) }
                                            (consent_select(&format!("{form_id}-consent"), Some(&form_id), topic.opt_in))
                                        }
                                        td { button.button.button-small type="submit" form=(form_id) aria-label={ "Save topic " (topic.name) } { "Save" } }
                                        td {
                                            form.inline method="post" action={ "/messages/topics/" (topic.id) "/delete" }
                                                data-confirm={ "Delete the topic " (topic.name) " and the contacts' choices about it?" } {
                                                (layout::csrf(signed))
                                                button.button.button-small.button-danger type="submit" aria-label={ "Delete topic " (topic.name) } { "Delete" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                form.inline-form method="post" action="/messages/topics" {
                    (layout::csrf(signed))
                    div.field.field-grow {
                        label for="topic-name" { "New topic" }
                        input #topic-name type="text" name="name" maxlength="100" required placeholder="e.g. Product tips"
                            value=(notice.draft.as_deref().unwrap_or_default());
                    }
                    div.field {
                        label for="topic-consent" { "Default" }
                        (consent_select("topic-consent", None, false))
                    }
                    div.field.field-actions { button.button.button-primary type="submit" { "Create topic" } }
                }
            }
        }
    };
    Ok(layout::page_with_status(signed, Nav::Messages, "Messages", status, body))
}

/// Opt-out or opt-in, as a select named `consent`.
fn consent_select(id: &str, form: Option<&str>, opt_in: bool) -> Markup {
    html! {
        select id=(id) name="consent" form=[form] {
            option value="opt_out" selected[!opt_in] { "Opt-out: sent until the contact says no" }
            option value="opt_in" selected[opt_in] { "Opt-in: needs the contact's yes" }
        }
    }
}

/// The topic forms.
#[derive(Debug, Default, Deserialize)]
pub struct TopicForm {
    #[serde(default)]
    name: String,
    consent: Option<String>,
}

impl TopicForm {
    fn opt_in(&self) -> bool {
        self.consent.as_deref() == Some("opt_in")
    }
}

/// Shows the page with what a topic change came to: a refusal in the topics card, a store
/// fault as an error page.
async fn topic_answer<T>(
    state: &AppState,
    signed: &Signed,
    result: Result<T, ApiError>,
    done: &str,
    draft: Option<String>,
) -> WebResult<Response> {
    match result {
        Ok(_) => {
            let notice = TopicNotice { message: Some((AlertKind::Success, done.to_owned())), draft: None };
            render(state, signed, notice, StatusCode::OK).await
        }
        Err(error) if error.status.is_client_error() && error.status != StatusCode::NOT_FOUND => {
            let status = error.status;
            let notice = TopicNotice { message: Some((AlertKind::Error, error.body.message)), draft };
            render(state, signed, notice, status).await
        }
        Err(error) => Err(error.into()),
    }
}

/// `POST /messages/topics`.
pub async fn create_topic(
    State(state): State<AppState>,
    Posted(signed, form): Posted<TopicForm>,
) -> WebResult<Response> {
    let result = messages::create_topic(&state, signed.workspace.id, &form.name, form.opt_in()).await;
    let done = format!("the topic “{}” is created.", form.name.trim());
    topic_answer(&state, &signed, result, &done, Some(form.name)).await
}

/// `POST /messages/topics/{id}`: renames it and sets its default.
pub async fn update_topic(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Posted(signed, form): Posted<TopicForm>,
) -> WebResult<Response> {
    let result = messages::update_topic(&state, signed.workspace.id, id, &form.name, form.opt_in()).await;
    topic_answer(&state, &signed, result, "the topic is saved.", None).await
}

/// `POST /messages/topics/{id}/delete`.
pub async fn delete_topic(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Posted(signed, _): Posted<Empty>,
) -> WebResult<Response> {
    let result = messages::delete_topic(&state, signed.workspace.id, id).await;
    topic_answer(&state, &signed, result, "the topic is deleted.", None).await
}

/// The template editor's form: the template, and whom to preview it for or send a test to.
#[derive(Debug, Default, Deserialize)]
pub struct TemplateForm {
    name: Option<String>,
    topic_id: Option<String>,
    subject: Option<String>,
    html: Option<String>,
    text: Option<String>,
    /// A contact's email, id or name, to render the preview and the test for.
    contact: Option<String>,
    /// Where the test goes.
    test_to: Option<String>,
    /// `save` (the default), `preview` or `test`: which button was pressed.
    intent: Option<String>,
}

impl TemplateForm {
    fn of(template: &Template) -> Self {
        let spec = &template.spec;
        TemplateForm {
            name: Some(spec.name.clone()),
            topic_id: Some(spec.topic_id.to_string()),
            subject: Some(spec.subject.clone()),
            html: Some(spec.html.clone()),
            text: Some(spec.text.clone()),
            ..TemplateForm::default()
        }
    }

    /// The template as typed; a topic that is not a number is no topic (the check names it).
    fn spec(&self) -> TemplateSpec {
        let text = |value: &Option<String>| value.clone().unwrap_or_default();
        TemplateSpec {
            name: text(&self.name).trim().to_owned(),
            topic_id: self.topic_id.as_deref().and_then(|id| id.trim().parse().ok()).unwrap_or(0),
            subject: text(&self.subject),
            html: text(&self.html),
            text: text(&self.text),
        }
    }
}

/// What the editor shows besides the form.
#[derive(Default)]
struct Outcome {
    /// A message above the form.
    notice: Option<(AlertKind, String)>,
    /// Refusals, by field.
    errors: Vec<(String, String)>,
    /// The draft rendered for a contact.
    preview: Option<(Contact, Rendered)>,
}

impl Outcome {
    /// A refusal of the service layer, shown next to its field (or above the form).
    fn refused(error: ApiError) -> WebResult<Self> {
        if !error.status.is_client_error() {
            return Err(error.into());
        }
        let field = match error.body.field.as_deref() {
            Some("topic_id") => "topic_id",
            Some(field @ ("name" | "subject" | "html" | "text" | "contact" | "test_to")) => field,
            _ => return Ok(Outcome { notice: Some((AlertKind::Error, error.body.message)), ..Outcome::default() }),
        };
        Ok(Outcome { errors: vec![(field.to_owned(), error.body.message)], ..Outcome::default() })
    }

    fn error(&self, field: &str) -> Option<&str> {
        self.errors.iter().find(|(f, _)| f == field).map(|(_, message)| message.as_str())
    }
}

/// `?saved=1` after a template was saved (the editor is reached by a redirect).
#[derive(Debug, Default, Deserialize)]
pub struct EditorQuery {
    saved: Option<String>,
}

/// `GET /messages/templates/new`.
pub async fn new_template(State(state): State<AppState>, signed: Signed) -> WebResult<Response> {
    editor(&state, &signed, None, &TemplateForm::default(), Outcome::default(), StatusCode::OK).await
}

/// `GET /messages/templates/{id}`.
pub async fn edit_template(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<i64>,
    Query(query): Query<EditorQuery>,
) -> WebResult<Response> {
    let template = find_template(&state, &signed, id).await?;
    let outcome = match query.saved {
        Some(_) => Outcome { notice: Some((AlertKind::Success, "saved.".into())), ..Outcome::default() },
        None => Outcome::default(),
    };
    editor(&state, &signed, Some(id), &TemplateForm::of(&template), outcome, StatusCode::OK).await
}

/// `POST /messages/templates`: saves a new template, or previews or test-sends the draft.
pub async fn create_template(
    State(state): State<AppState>,
    Posted(signed, form): Posted<TemplateForm>,
) -> WebResult<Response> {
    submit(&state, &signed, None, form).await
}

/// `POST /messages/templates/{id}`: saves the template, or previews or test-sends the draft.
pub async fn update_template(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Posted(signed, form): Posted<TemplateForm>,
) -> WebResult<Response> {
    find_template(&state, &signed, id).await?;
    submit(&state, &signed, Some(id), form).await
}

/// `POST /messages/templates/{id}/delete`.
pub async fn delete_template(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Posted(signed, _): Posted<Empty>,
) -> WebResult<Response> {
    let result = messages::delete_template(&state, signed.workspace.id, id).await;
    if result.is_ok() {
        return Ok(Redirect::to("/messages#templates").into_response());
    }
    topic_answer(&state, &signed, result, "", None).await
}

async fn find_template(state: &AppState, signed: &Signed, id: i64) -> WebResult<Template> {
    state
        .store
        .template(signed.workspace.id, id)
        .await?
        .ok_or_else(|| WebError::not_found(format!("there is no template {id}")))
}

async fn submit(state: &AppState, signed: &Signed, id: Option<i64>, form: TemplateForm) -> WebResult<Response> {
    let workspace = signed.workspace.id;
    let spec = form.spec();
    let outcome = match form.intent.as_deref() {
        Some("preview") => match pick(state, signed, &form).await? {
            Err(outcome) => outcome,
            Ok(contact) => match messages::preview(state, workspace, &spec, &contact).await {
                Ok(rendered) => Outcome { preview: Some((contact, rendered)), ..Outcome::default() },
                Err(error) => Outcome::refused(error)?,
            },
        },
        Some("test") => match pick(state, signed, &form).await? {
            Err(outcome) => outcome,
            Ok(contact) => {
                let to = form.test_to.as_deref().unwrap_or_default();
                match messages::send_test(state, workspace, &spec, &contact, to).await {
                    Ok(Ok(to)) => Outcome {
                        notice: Some((
                            AlertKind::Success,
                            format!("a test went to {to}, rendered for {}.", contact.email),
                        )),
                        ..Outcome::default()
                    },
                    Ok(Err(why)) => Outcome {
                        notice: Some((AlertKind::Error, format!("the test could not be sent: {why}"))),
                        ..Outcome::default()
                    },
                    Err(error) => Outcome::refused(error)?,
                }
            }
        },
        _ => {
            if let Err(error) = check_template(state, workspace, &spec).await {
                let outcome = Outcome::refused(error)?;
                return editor(state, signed, id, &form, outcome, StatusCode::BAD_REQUEST).await;
            }
            let saved = match id {
                Some(id) => state
                    .store
                    .update_template(workspace, id, spec)
                    .await?
                    .ok_or_else(|| WebError::not_found(format!("there is no template {id}")))?,
                None => state.store.create_template(workspace, spec).await?,
            };
            return Ok(Redirect::to(&format!("/messages/templates/{}?saved=1", saved.id)).into_response());
        }
    };
    let status = if outcome.errors.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    editor(state, signed, id, &form, outcome, status).await
}

/// The contact a preview or a test is rendered for, or the editor telling why none.
async fn pick(state: &AppState, signed: &Signed, form: &TemplateForm) -> WebResult<Result<Contact, Outcome>> {
    match pick_contact(state, signed.workspace.id, form.contact.as_deref().unwrap_or_default()).await {
        Ok(contact) => Ok(Ok(contact)),
        Err(error) => Ok(Err(Outcome::refused(error)?)),
    }
}

/// A text field, or a text area when `rows` is given, with its label, hint and error.
fn field(
    id: &str,
    name: &str,
    label: &str,
    value: Option<&str>,
    rows: Option<u32>,
    hint: Option<Markup>,
    error: Option<&str>,
) -> Markup {
    let error_id = format!("err-{name}");
    let hint_id = format!("{id}-hint");
    let described = match (hint.is_some(), error.is_some()) {
        (true, true) => format!("{error_id} {hint_id}"),
        (true, false) => hint_id.clone(),
        (false, _) => error_id.clone(),
    };
    html! {
        div.field {
            label for=(id) { (label) }
            @if let Some(rows) = rows {
                textarea.code id=(id) name=(name) rows=(rows) spellcheck="false"
                    aria-invalid=[error.map(|_| "true")] aria-describedby=(described) { (value.unwrap_or_default()) }
            } @else {
                input id=(id) type="text" name=(name) value=(value.unwrap_or_default())
                    aria-invalid=[error.map(|_| "true")] aria-describedby=(described);
            }
            (field_error(name, error))
            @if let Some(hint) = hint { p.hint id=(hint_id) { (hint) } }
        }
    }
}

/// The slot of a field's error, always present so that the live preview can fill or clear it.
fn field_error(name: &str, error: Option<&str>) -> Markup {
    html! {
        p.field-error id={ "err-" (name) } role="alert" hidden[error.is_none()] {
            @if let Some(error) = error { (layout::capitalize(error)) }
        }
    }
}

async fn editor(
    state: &AppState,
    signed: &Signed,
    id: Option<i64>,
    form: &TemplateForm,
    outcome: Outcome,
    status: StatusCode,
) -> WebResult<Response> {
    let topics: Vec<Topic> = state.store.topics(signed.workspace.id).await?;
    let title = match id {
        Some(_) => form.name.clone().filter(|name| !name.trim().is_empty()).unwrap_or_else(|| "Template".into()),
        None => "New template".to_owned(),
    };
    let action = match id {
        Some(id) => format!("/messages/templates/{id}"),
        None => "/messages/templates".to_owned(),
    };
    let chosen_topic = form.topic_id.as_deref().and_then(|id| id.parse::<i64>().ok());
    let variables = html! {
        "Jinja syntax: " code { "{{ contact.first_name }}" } ", " code { "{{ event.plan }}" } ", "
        code { "{{ account.name }}" } ", " code { "{% if … %}…{% endif %}" } ", " code { "{% for … %}" } ", filters such as "
        code { "| upper" } ". Link " code { "{{ unsubscribe_url }}" } " so a contact can leave the topic."
    };
    let body = html! {
        p.crumbs { a href="/messages" { "← Messages" } }
        (layout::page_header(&title, Some(html! { "Subject, HTML and plain-text bodies, rendered for each contact when sent." }), None))
        @if let Some((kind, message)) = &outcome.notice { (layout::alert(*kind, message)) }
        form.stack #template-editor method="post" action=(action) data-live-preview {
            (layout::csrf(signed))
            section.card aria-labelledby="template-title" {
                h2 #template-title { "Template" }
                div.stack {
                    div.row {
                        (field("t-name", "name", "Name", form.name.as_deref(), None, None, outcome.error("name")))
                        div.field {
                            label for="t-topic" { "Topic" }
                            select #t-topic name="topic_id" aria-invalid=[outcome.error("topic_id").map(|_| "true")] aria-describedby="err-topic_id t-topic-hint" {
                                @if topics.is_empty() { option value="" { "No topic yet" } }
                                @for topic in &topics {
                                    option value=(topic.id) selected[chosen_topic == Some(topic.id)] {
                                        (topic.name) @if topic.opt_in { " (opt-in)" }
                                    }
                                }
                            }
                            (field_error("topic_id", outcome.error("topic_id")))
                            p.hint #t-topic-hint {
                                "Who may receive it. "
                                a href="/messages#topics" { @if topics.is_empty() { "Create a topic first." } @else { "Manage topics." } }
                            }
                        }
                    }
                    (field("t-subject", "subject", "Subject", form.subject.as_deref(), None, None, outcome.error("subject")))
                    (field("t-html", "html", "HTML body", form.html.as_deref(), Some(12), Some(variables), outcome.error("html")))
                    (field("t-text", "text", "Plain-text body", form.text.as_deref(), Some(8), None, outcome.error("text")))
                    div { button.button.button-primary type="submit" name="intent" value="save" { "Save template" } }
                }
            }
            section.card aria-labelledby="try-title" {
                h2 #try-title { "Preview and test" }
                p.small.muted { "The draft as typed, saved or not, rendered for a real contact (with no triggering event)." }
                div.inline-form {
                    div.field.field-grow {
                        label for="t-contact" { "Contact" }
                        input #t-contact type="search" name="contact" value=(form.contact.as_deref().unwrap_or_default())
                            placeholder="Email or name" autocomplete="off"
                            aria-invalid=[outcome.error("contact").map(|_| "true")] aria-describedby="err-contact";
                    }
                    div.field.field-actions { button.button type="submit" name="intent" value="preview" { "Preview" } }
                }
                (field_error("contact", outcome.error("contact")))
                div.inline-form {
                    div.field.field-grow {
                        label for="t-test-to" { "Send a test to" }
                        input #t-test-to type="email" name="test_to" value=(form.test_to.as_deref().unwrap_or_default())
                            placeholder="you@example.com" autocomplete="email"
                            aria-invalid=[outcome.error("test_to").map(|_| "true")] aria-describedby="err-test_to";
                    }
                    div.field.field-actions { button.button type="submit" name="intent" value="test" { "Send test" } }
                }
                (field_error("test_to", outcome.error("test_to")))
            }
        }
        section.card #preview aria-labelledby="preview-title" aria-live="polite" {
            h2 #preview-title { "Preview" }
            @match &outcome.preview {
                Some((contact, rendered)) => {
                    p.small.muted { "For " strong { (contact.name.as_deref().unwrap_or(&contact.email)) } " <" (contact.email) ">" }
                    dl.traits {
                        dt { "Subject" } dd #preview-subject { (rendered.subject) }
                    }
                    iframe.preview-frame sandbox="" title="The HTML body as rendered" srcdoc=(rendered.html) {}
                    h3 { "Plain text" }
                    pre.preview-text #preview-text { (rendered.text) }
                }
                None => p.muted { "Type a contact and press Preview to see the message as it would reach them." }
            }
        }
    };
    let mut response = layout::page_with_status(signed, Nav::Messages, &title, status, body);
    response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(EDITOR_POLICY));
    Ok(response)
}
