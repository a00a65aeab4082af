//! Contacts: the list (search, filters, keyset pages), a contact's page with its timeline,
//! event stream and forms (note/call/meeting, cadence, delete), and the losing-touch and due
//! lists.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use jiff::civil::DateTime;
use jiff::Timestamp;
use kith_core::closeness::{Bucket, Closeness, InteractionKind};
use kith_core::profile;
use kith_core::time::date_of_day_key;
use kith_store::{
    Account, Contact, ContactQuery, ContactSort, Interaction, NewInteraction, OwnerFilter, OwnerSubject, Workspace,
};
use maud::{html, Markup};
use serde::Deserialize;

use super::layout::{self, AlertKind, Nav};
use super::session::{Posted, Signed};
use super::{charts, owners};
use super::{page_cursor, CursorParams, WebError, WebResult};
use crate::service::contacts::{self, find_contact, StreamEvent, MAX_CADENCE_DAYS};
use crate::service::encode_cursor;
use crate::service::messages::{self, TopicConsent};
use crate::AppState;

/// Contacts per page of a list.
const PAGE_SIZE: usize = 50;
/// Events per page of a contact's stream.
const EVENTS_PAGE_SIZE: usize = 20;
/// Messages sent to or skipped for the contact shown on its page, newest first.
const MESSAGES_SHOWN: usize = 20;
/// Weekly points of the closeness line on a contact's page (twelve weeks, and now).
const CLOSENESS_SAMPLES: i64 = 13;
/// How far past kith's clock a hand-written interaction may be dated (clock drift, not plans).
const MAX_FUTURE_MINUTES: i64 = 5;

/// A contact as a list shows it.
pub struct Row {
    /// The contact.
    pub contact: Contact,
    /// Its closeness now.
    pub closeness: Closeness,
    /// Its first account, if any.
    pub account: Option<Account>,
}

/// Rows for a page of contacts, each with its closeness now and its account.
pub async fn rows(state: &AppState, workspace: &Workspace, contacts: Vec<Contact>) -> WebResult<Vec<Row>> {
    let model = workspace.model();
    let now = state.clock.now();
    let mut rows = Vec::with_capacity(contacts.len());
    for contact in contacts {
        // One indexed lookup per row; a page has at most PAGE_SIZE rows.
        let account = state.store.contact_accounts(workspace.id, contact.id).await?.into_iter().next();
        rows.push(Row { closeness: contact.closeness(&model, now), account, contact });
    }
    Ok(rows)
}

/// The extra column of a contact table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extra {
    /// Last seen in the product (the default).
    LastSeen,
    /// When a touch was due.
    Due,
    /// The last interaction of any kind.
    LastInteraction,
}

/// A table of contacts.
pub fn contact_table(rows: &[Row], workspace: &Workspace, now: Timestamp, extra: Extra) -> Markup {
    let tz = workspace.tz();
    let extra_label = match extra {
        Extra::LastSeen => "Last seen",
        Extra::Due => "Due since",
        Extra::LastInteraction => "Last interaction",
    };
    html! {
        div.table-wrap {
            table.table.contacts {
                thead {
                    tr {
                        th scope="col" { "Contact" }
                        th scope="col" { "Closeness" }
                        th scope="col" { (extra_label) }
                        th.hide-sm scope="col" { "Account" }
                    }
                }
                tbody {
                    @for row in rows {
                        @let contact = &row.contact;
                        @let name = contact.name.clone().unwrap_or_else(|| contact.email.clone());
                        @let picture = profile::field(&contact.traits, &["avatar"]);
                        @let shown = match extra {
                            Extra::LastSeen => Some(contact.last_seen_at),
                            Extra::Due => contact.due_at,
                            Extra::LastInteraction => contact.last_interaction_at,
                        };
                        tr {
                            td {
                                a.contact-cell href={ "/contacts/" (contact.id) } {
                                    (layout::avatar(&name, picture.as_deref(), false))
                                    span.contact-names {
                                        span.contact-name { (name) }
                                        span.contact-email { (contact.email) }
                                    }
                                }
                            }
                            td { (layout::badge(&row.closeness)) }
                            td {
                                @if let Some(time) = shown {
                                    (layout::time_tag(time, &tz))
                                    span.sub { (layout::ago(time, now)) }
                                } @else {
                                    span.muted { "—" }
                                }
                            }
                            td.hide-sm {
                                @if let Some(account) = &row.account {
                                    a href={ "/accounts/" (layout::encode_query(&account.group_id)) } {
                                        (account.name.as_deref().unwrap_or(&account.group_id))
                                    }
                                } @else {
                                    span.muted { "—" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `/contacts` parameters.
#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    q: Option<String>,
    bucket: Option<String>,
    audience: Option<String>,
    sort: Option<String>,
    cursor: Option<String>,
    deleted: Option<String>,
    /// `me`: only the signed-in user's contacts.
    owner: Option<String>,
}

/// `GET /contacts`.
pub async fn list(
    State(state): State<AppState>,
    signed: Signed,
    headers: HeaderMap,
    Query(params): Query<ListParams>,
) -> WebResult<Response> {
    let workspace = &signed.workspace;
    let now = state.clock.now();
    let search = params.q.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let bucket = params.bucket.as_deref().and_then(Bucket::parse);
    let audience = params.audience.as_deref().filter(|s| !s.is_empty());
    let by_closeness = params.sort.as_deref() == Some("closeness");
    let mine = owners::wants_mine(params.owner.as_deref())?;
    let cursor = page_cursor(params.cursor.as_deref());
    let on_later_page = cursor.is_some();
    let query = ContactQuery {
        search: search.map(str::to_owned),
        sort: if by_closeness { ContactSort::Closeness } else { ContactSort::LastSeen },
        key_range: bucket.map(|bucket| contacts::bucket_range(bucket, &workspace.model(), now)),
        audience: audience.map(str::to_owned),
        owner: mine.then_some(OwnerFilter::User(signed.user.id)),
        cursor,
        limit: PAGE_SIZE,
        ..ContactQuery::default()
    };
    let page = state.store.contacts(workspace.id, query).await?;
    let audiences = state.store.audiences(workspace.id).await?;
    let filtered = search.is_some() || bucket.is_some() || audience.is_some() || mine;
    let rows = rows(&state, workspace, page.items).await?;
    let sort = by_closeness.then_some("closeness");
    let filters = [
        ("q", search),
        ("bucket", bucket.map(Bucket::as_str)),
        ("audience", audience),
        ("sort", sort),
        ("owner", mine.then_some("me")),
    ];
    let first = layout::link("/contacts", &filters);
    let next = encode_cursor(page.next).map(|cursor| {
        let mut pairs = filters.to_vec();
        pairs.push(("cursor", Some(&cursor)));
        layout::link("/contacts", &pairs)
    });

    let body = html! {
        (layout::page_header("Contacts", Some(html! { "Everyone your product has seen, and how close you are." }), None))
        @if let Some(email) = &params.deleted {
            (layout::alert(AlertKind::Success, &format!("deleted {email} and everything kith knew about them.")))
        }
        form.filters method="get" action="/contacts" role="search" {
            div.field.field-grow {
                label for="q" { "Search" }
                input #q type="search" name="q" value=(search.unwrap_or_default())
                    placeholder="Name, email or any trait";
            }
            div.field {
                label for="bucket" { "Closeness" }
                select #bucket name="bucket" data-autosubmit {
                    option value="" { "Any" }
                    @for option in Bucket::ALL {
                        option value=(option.as_str()) selected[bucket == Some(option)] { (layout::capitalize(option.as_str())) }
                    }
                }
            }
            div.field {
                label for="audience" { "Audience" }
                select #audience name="audience" data-autosubmit {
                    option value="" { "Any" }
                    @for option in &audiences {
                        option value=(option.key) selected[audience == Some(option.key.as_str())] { (option.key) }
                    }
                }
            }
            div.field {
                label for="sort" { "Sort" }
                select #sort name="sort" data-autosubmit {
                    option value="last_seen" selected[!by_closeness] { "Last seen" }
                    option value="closeness" selected[by_closeness] { "Closest first" }
                }
            }
            div.field {
                label.check {
                    input type="checkbox" name="owner" value="me" checked[mine] data-autosubmit;
                    " Mine only"
                }
            }
            div.field.field-actions {
                button.button.button-primary type="submit" { "Filter" }
                @if filtered { a.button.button-ghost href="/contacts" { "Clear" } }
            }
        }
        @if rows.is_empty() && filtered {
            (layout::empty_state("No contacts match", html! {
                p { "Nobody matches these filters. Try another search or " a href="/contacts" { "clear the filters" } "." }
            }))
        } @else if rows.is_empty() && !on_later_page {
            // The page reloads itself when the first event lands, so the contact appears.
            div data-reload-on="/debugger/stream" {}
            (layout::empty_state("No contacts yet", html! {
                p { "Send kith an identify and the person appears here, with a timeline of what they do. "
                    "Replace YOUR_WRITE_KEY with a write key from " a href="/settings" { "Settings" } ":" }
                (layout::code_block(&layout::first_event_curl(&headers, state.clock.now()), "Copy the curl command"))
                p.muted { "Or point Segment's Webhooks destination, or any Segment SDK, at this server. "
                    "Watch events arrive in the " a href="/debugger" { "live debugger" } "." }
            }))
        } @else {
            (contact_table(&rows, workspace, now, Extra::LastSeen))
            (layout::pager(&first, next, on_later_page))
        }
    };
    Ok(layout::page(&signed, Nav::Contacts, "Contacts", body))
}

/// `GET /losing-touch`: close or warm in the last 90 days, cooling or cold now.
pub async fn losing_touch(
    State(state): State<AppState>,
    signed: Signed,
    Query(params): Query<CursorParams>,
) -> WebResult<Response> {
    let query = contacts::losing_touch(state.clock.now(), page_cursor(params.cursor.as_deref()), PAGE_SIZE);
    let lead = html! { "People who were close or warm in the last 90 days and are now cooling or cold, closest first. A note, a call or a meeting brings them back." };
    let empty = html! {
        p { "Nobody is slipping away. When someone who was close or warm goes quiet, they show up here before they go cold." }
    };
    let list = ListPage {
        nav: Nav::LosingTouch,
        title: "Losing touch",
        path: "/losing-touch",
        lead,
        empty,
        extra: Extra::LastInteraction,
    };
    contact_list(&state, &signed, list, query).await
}

/// `GET /due`: contacts whose cadence says it is time for a touch.
pub async fn due(
    State(state): State<AppState>,
    signed: Signed,
    Query(params): Query<CursorParams>,
) -> WebResult<Response> {
    let query = contacts::due(state.clock.now(), page_cursor(params.cursor.as_deref()), PAGE_SIZE);
    let lead = html! { "Contacts whose cadence has passed since their last interaction, most overdue first. Any interaction resets the timer, product activity included." };
    let empty = html! {
        p { "Nobody is due. Give a contact a cadence (every N days) on its page, and kith lists it here when the time since the last interaction passes it." }
    };
    let list = ListPage { nav: Nav::Due, title: "Due", path: "/due", lead, empty, extra: Extra::Due };
    contact_list(&state, &signed, list, query).await
}

/// What a titled list of contacts shows around its rows.
struct ListPage {
    nav: Nav,
    title: &'static str,
    path: &'static str,
    lead: Markup,
    empty: Markup,
    extra: Extra,
}

/// A titled, paged list of contacts.
async fn contact_list(state: &AppState, signed: &Signed, list: ListPage, query: ContactQuery) -> WebResult<Response> {
    let ListPage { nav, title, path, lead, empty, extra } = list;
    let now = state.clock.now();
    let on_later_page = query.cursor.is_some();
    let page = state.store.contacts(signed.workspace.id, query).await?;
    let next = encode_cursor(page.next).map(|cursor| layout::link(path, &[("cursor", Some(&cursor))]));
    let rows = rows(state, &signed.workspace, page.items).await?;
    let body = html! {
        (layout::page_header(title, Some(lead), None))
        @if rows.is_empty() && !on_later_page {
            (layout::empty_state(&format!("No one is {}", title.to_lowercase()), empty))
        } @else {
            (contact_table(&rows, &signed.workspace, now, extra))
            (layout::pager(path, next, on_later_page))
        }
    };
    Ok(layout::page(signed, nav, title, body))
}

/// A contact page's own pages: of the timeline and of the event stream.
#[derive(Debug, Default, Deserialize)]
pub struct ShowParams {
    timeline: Option<String>,
    events: Option<String>,
    /// What a refused task form said.
    task_error: Option<String>,
    /// What a refused owner form said.
    owner_error: Option<String>,
}

/// `GET /contacts/{id}`.
pub async fn show(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
    Query(params): Query<ShowParams>,
) -> WebResult<Response> {
    render_contact(&state, &signed, &id, &params, None).await
}

/// Which form of the contact page a problem concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Interaction,
    Cadence,
    Subscription,
}

/// A form sent back with what to fix, and what was typed.
struct Problem<'a> {
    section: Section,
    message: String,
    interaction: Option<&'a InteractionForm>,
    cadence: Option<&'a str>,
}

async fn render_contact(
    state: &AppState,
    signed: &Signed,
    id: &str,
    params: &ShowParams,
    problem: Option<Problem<'_>>,
) -> WebResult<Response> {
    let workspace = &signed.workspace;
    let contact = find_contact(state, workspace.id, id).await?;
    let now = state.clock.now();
    let tz = workspace.tz();
    let closeness = contact.closeness(&workspace.model(), now);
    let contacts::Detail { contact, identities, accounts, audiences } =
        contacts::detail(state, workspace.id, contact).await?;
    let timeline_cursor = page_cursor(params.timeline.as_deref());
    let timeline_later = timeline_cursor.is_some();
    let timeline = state.store.timeline(workspace.id, contact.id, timeline_cursor, PAGE_SIZE).await?;
    let events_later = params.events.as_deref().is_some_and(|c| !c.is_empty());
    let events_cursor = page_cursor(params.events.as_deref());
    let events = contacts::events(state, workspace.id, contact.id, events_cursor, EVENTS_PAGE_SIZE).await?;
    let sent_or_skipped = state.store.message_log(workspace.id, contact.id, MESSAGES_SHOWN).await?;
    let preferences = messages::consents(state, workspace.id, &contact).await?;
    let template_names: Vec<(i64, String)> = if sent_or_skipped.is_empty() {
        Vec::new()
    } else {
        state.store.templates(workspace.id).await?.into_iter().map(|t| (t.id, t.spec.name)).collect()
    };
    let rule_names: Vec<(i64, String)> = if sent_or_skipped.iter().any(|m| m.entry.rule_id.is_some()) {
        state.store.rules(workspace.id).await?.into_iter().map(|r| (r.id, r.spec.name)).collect()
    } else {
        Vec::new()
    };
    let journeys_card = super::journeys::contact_card(state, signed, contact.id).await?;
    let follow_ups = owners::follow_ups(state, signed, OwnerSubject::Contact, contact.id).await?;
    let over_time = contacts::closeness_over_time(state, workspace, contact.id, now, CLOSENESS_SAMPLES, 7).await?;
    let closeness_points: Vec<charts::Point> = over_time
        .iter()
        .map(|(at, score)| charts::Point {
            label: tz.to_datetime(*at).date().strftime("%-d %b").to_string(),
            value: f64::from(*score),
        })
        .collect();
    let closeness_summary = match over_time.first() {
        Some((_, first)) => format!("from {first} twelve weeks ago to {} now", closeness.score),
        None => format!("{} now", closeness.score),
    };

    let base = format!("/contacts/{}", contact.id);
    let timeline_next = encode_cursor(timeline.next).map(|c| format!("{base}?timeline={c}#timeline"));
    let events_next = encode_cursor(events.next).map(|c| format!("{base}?events={c}#events"));
    let name = contact.name.clone().unwrap_or_else(|| contact.email.clone());
    let fields = profile::profile(&contact.traits);
    // "CTO at Analytical Engines".
    let headline: Vec<&str> = ["title", "company"]
        .iter()
        .filter_map(|wanted| fields.iter().find(|(field, _)| field == wanted).map(|(_, value)| value.as_str()))
        .collect();
    let picture = profile::field(&contact.traits, &["avatar"]);
    let problem_in = |section: Section| problem.as_ref().filter(|p| p.section == section);
    let draft = problem.as_ref().and_then(|p| p.interaction);
    let cadence_value = problem
        .as_ref()
        .and_then(|p| p.cadence)
        .map(str::to_owned)
        .or_else(|| contact.cadence_days.map(|days| days.to_string()))
        .unwrap_or_default();

    let body = html! {
        p.crumbs { a href="/contacts" { "← Contacts" } }
        section.contact-head {
            (layout::avatar(&name, picture.as_deref(), true))
            div.contact-head-text {
                h1 { (name) }
                p.muted {
                    a href={ "mailto:" (contact.email) } { (contact.email) }
                    @if !headline.is_empty() { " · " (headline.join(" at ")) }
                }
                p.chips {
                    @for account in &accounts {
                        a.chip.chip-account href={ "/accounts/" (layout::encode_query(&account.group_id)) } {
                            (account.name.as_deref().unwrap_or(&account.group_id))
                        }
                    }
                    @for membership in audiences.iter().filter(|m| m.is_member) {
                        a.chip href={ "/audiences/" (layout::encode_query(&membership.key)) } { (membership.key) }
                    }
                }
            }
            div.contact-head-score {
                (layout::badge(&closeness))
                p.sub { "Last seen " (layout::ago(contact.last_seen_at, now)) }
            }
        }
        div.contact-grid {
            div.contact-main {
                section.card #add-interaction aria-labelledby="add-title" {
                    h2 #add-title { "Add a note, call or meeting" }
                    @if let Some(problem) = problem_in(Section::Interaction) {
                        (layout::alert(AlertKind::Error, &problem.message))
                    }
                    form.stack method="post" action={ (base) "/interactions" } {
                        (layout::csrf(signed))
                        div.row {
                            div.field {
                                label for="kind" { "Kind" }
                                select #kind name="kind" {
                                    @for kind in [InteractionKind::Note, InteractionKind::Call, InteractionKind::Meeting, InteractionKind::Email] {
                                        option value=(kind.as_str()) selected[draft.and_then(|d| d.kind.as_deref()) == Some(kind.as_str())] {
                                            (layout::capitalize(kind.as_str()))
                                        }
                                    }
                                }
                            }
                            div.field {
                                label for="when" { "When " span.muted { "(" (tz.iana_name().unwrap_or("UTC")) ")" } }
                                input #when type="datetime-local" name="when" value=(draft.and_then(|d| d.when.as_deref()).unwrap_or_default());
                            }
                        }
                        div.field {
                            label for="text" { "What happened" }
                            textarea #text name="text" rows="3" required placeholder="Talked about the pricing page; follow up next week." {
                                (draft.and_then(|d| d.text.as_deref()).unwrap_or_default())
                            }
                        }
                        div { button.button.button-primary type="submit" { "Add to timeline" } }
                    }
                }
                section.card #timeline aria-labelledby="timeline-title" {
                    h2 #timeline-title { "Timeline" }
                    @if timeline.items.is_empty() {
                        p.muted { "No interactions yet. Product activity adds one per day; notes, calls and meetings add theirs." }
                    } @else {
                        ol.timeline {
                            @for interaction in &timeline.items { (timeline_item(interaction, &tz)) }
                        }
                    }
                    (layout::pager(&format!("{base}#timeline"), timeline_next, timeline_later))
                }
                @if !preferences.is_empty() || !sent_or_skipped.is_empty() {
                    section.card #messages aria-labelledby="messages-title" {
                        h2 #messages-title { "Messages" }
                        @if let Some(problem) = problem_in(Section::Subscription) {
                            (layout::alert(AlertKind::Error, &problem.message))
                        }
                        @if !preferences.is_empty() {
                            h3 #topics-title { "Topics" }
                            ul.plain.preferences aria-labelledby="topics-title" {
                                @for consent in &preferences {
                                    li {
                                        strong { (consent.topic.name) } " "
                                        @match consent.allowed {
                                            Ok(()) => span.tag.tag-in { "subscribed" },
                                            Err(reason) => span.tag.tag-out { (reason.replace('_', " ")) },
                                        }
                                        span.sub { (consent_note(consent)) }
                                        form.inline method="post" action={ (base) "/subscriptions" } {
                                            (layout::csrf(signed))
                                            input type="hidden" name="topic_id" value=(consent.topic.id);
                                            @if consent.choice == Some(false) || (consent.choice.is_none() && consent.allowed.is_err()) {
                                                input type="hidden" name="subscribed" value="1";
                                                button.button.button-small type="submit" aria-label={ "Subscribe to " (consent.topic.name) } { "Subscribe" }
                                            } @else {
                                                input type="hidden" name="subscribed" value="0";
                                                button.button.button-small type="submit" aria-label={ "Unsubscribe from " (consent.topic.name) } { "Unsubscribe" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                        h3 { "Sent, held and skipped" }
                        @if sent_or_skipped.is_empty() {
                            p.small.muted { "No message considered yet." }
                        } @else {
                            div.table-wrap {
                                table.table.message-log {
                                    thead { tr { th scope="col" { "When" } th scope="col" { "Template" } th scope="col" { "Status" } } }
                                    tbody {
                                        @for message in &sent_or_skipped {
                                            @let entry = &message.entry;
                                            tr {
                                                td { (layout::time_tag(entry.at, &tz)) span.sub { (layout::clock_time(entry.at, &tz)) } }
                                                td {
                                                    @match template_names.iter().find(|(id, _)| *id == entry.template_id) {
                                                        Some((id, name)) => a href={ "/messages/templates/" (id) } { (name) },
                                                        None => { "Template " (entry.template_id) " (deleted)" },
                                                    }
                                                    @if let Some(rule) = entry.rule_id {
                                                        span.sub {
                                                            "Rule: "
                                                            (rule_names.iter().find(|(id, _)| *id == rule).map_or_else(|| format!("{rule} (deleted)"), |(_, name)| name.clone()))
                                                        }
                                                    }
                                                }
                                                td {
                                                    span.tag.tag-in[entry.outcome == "sent"].tag-out[entry.outcome != "sent"] { (entry.outcome) }
                                                    @if let Some(reason) = &entry.reason { span.sub { (reason.replace('_', " ")) } }
                                                    @if let Some(until) = entry.send_at { span.sub { "until " (layout::date_time(until, &tz)) } }
                                                    @if message.activity.opened_at.is_some() { span.sub { "opened" } }
                                                    @if message.activity.clicked_at.is_some() { span.sub { "clicked" } }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                (journeys_card)
                section.card #events aria-labelledby="events-title" {
                    h2 #events-title { "Event stream" }
                    p.muted.small { "Every event kith stored for this contact, newest first, with the traits the contact had at the time." }
                    @if events.items.is_empty() {
                        p.muted { "No events stored." }
                    } @else {
                        ul.events { @for event in &events.items { (event_item(event, &tz)) } }
                    }
                    (layout::pager(&format!("{base}#events"), events_next, events_later))
                }
            }
            aside.contact-side {
                (owners::owner_card(signed, &base, &follow_ups, params.owner_error.as_deref()))
                (owners::tasks_card(signed, &base, &follow_ups, params.task_error.as_deref(), &tz))
                section.card aria-labelledby="closeness-title" {
                    h2 #closeness-title { "Closeness" }
                    div.score-line {
                        span class={ "score score-" (closeness.bucket.as_str()) } { (closeness.score) }
                        span.muted { "of 100 · " (closeness.bucket.as_str()) }
                    }
                    progress class={ "meter meter-" (closeness.bucket.as_str()) } max="100" value=(closeness.score) aria-label="Closeness score" {}
                    (charts::line("closeness-history", "Closeness by week", &closeness_summary, &closeness_points, 100.0))
                    p.small.muted {
                        "Every interaction counts and fades with a half-life of "
                        (workspace.half_life_days) " days. First seen " (layout::date(contact.first_seen_at, &tz)) "."
                    }
                }
                section.card #cadence aria-labelledby="cadence-title" {
                    h2 #cadence-title { "Stay in touch" }
                    @if let Some(problem) = problem_in(Section::Cadence) {
                        (layout::alert(AlertKind::Error, &problem.message))
                    }
                    p.small {
                        @match (contact.effective_cadence_days, contact.due_at) {
                            (Some(days), Some(due)) if due <= now => {
                                strong.due-now { "Due now" } " — every " (layout::days(days)) ", due since " (layout::date(due, &tz)) "."
                            }
                            (Some(days), Some(due)) => { "Every " (layout::days(days)) "; next touch due " (layout::date(due, &tz)) "." }
                            (Some(days), None) => { "Every " (layout::days(days)) "." }
                            (None, _) => { "No cadence: kith will not remind you about this contact." }
                        }
                        @if contact.cadence_days.is_none() && contact.effective_cadence_days.is_some() {
                            " Inherited from an audience or account rule."
                        }
                    }
                    form.inline-form method="post" action={ (base) "/cadence" } {
                        (layout::csrf(signed))
                        label for="days" { "Every" }
                        input #days type="number" name="days" min="1" max=(MAX_CADENCE_DAYS) inputmode="numeric" value=(cadence_value) placeholder="—";
                        span { "days" }
                        button.button type="submit" { "Save" }
                    }
                    p.small.muted { "Leave empty to remove the contact's own cadence." }
                }
                section.card aria-labelledby="profile-title" {
                    h2 #profile-title { "Profile" }
                    dl.traits {
                        dt { "Email" } dd { (contact.email) }
                        @for (field, value) in fields.iter().filter(|(field, _)| *field != "avatar") {
                            dt { (layout::capitalize(&field.replace('_', " "))) } dd { (value) }
                        }
                    }
                    @let others: Vec<_> = contact.traits.iter().filter(|(key, _)| !is_profile_trait(key)).collect();
                    @if !others.is_empty() {
                        h3 { "Traits" }
                        dl.traits {
                            @for (key, value) in others {
                                dt {
                                    (key)
                                    @if contact.computed_traits.contains(key) { " " span.tag { "computed" } }
                                }
                                dd { (layout::trait_text(value)) }
                            }
                        }
                    }
                    @if !identities.is_empty() {
                        h3 { "Identities" }
                        ul.plain {
                            @for identity in &identities {
                                li { code { (identity.value) } " " span.muted.small { (identity.kind.replace('_', " ")) } }
                            }
                        }
                    }
                    @if audiences.iter().any(|m| !m.is_member) {
                        h3 { "Past audiences" }
                        ul.plain {
                            @for membership in audiences.iter().filter(|m| !m.is_member) {
                                li { (membership.key) " " span.muted.small { "left " (layout::date(membership.changed_at, &tz)) } }
                            }
                        }
                    }
                }
                section.card.card-danger aria-labelledby="delete-title" {
                    h2 #delete-title { "Delete contact" }
                    p.small { "Erases this contact, its timeline and its events for good (GDPR)." }
                    form method="post" action={ (base) "/delete" } data-confirm={ "Delete " (contact.email) " and everything kith knows about them?" } {
                        (layout::csrf(signed))
                        label.check {
                            input type="checkbox" name="suppress" value="1";
                            " Also keep future events from this email out"
                        }
                        button.button.button-danger type="submit" { "Delete contact" }
                    }
                }
            }
        }
    };
    let status = if problem.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    Ok(layout::page_with_status(signed, Nav::Contacts, &name, status, body))
}

/// Where a topic's answer comes from, in a few words.
fn consent_note(consent: &TopicConsent) -> &'static str {
    match (consent.allowed, consent.choice) {
        (Err("suppressed"), _) => "The email is on the suppression list: nothing is sent to it.",
        (Err("unsubscribed"), Some(false)) => "Unsubscribed (preferences page, link, or by hand).",
        (Err("unsubscribed"), _) => "Unsubscribed by the contact's traits from Segment.",
        (Err(_), _) => "Opt-in topic: nothing is sent until the contact says yes.",
        (Ok(()), Some(true)) => "Subscribed (preferences page or by hand).",
        (Ok(()), _) if consent.topic.opt_in => "Said yes in the contact's traits from Segment.",
        (Ok(()), _) => "Opt-out topic: sent until the contact says no.",
    }
}

/// The subscription form of the contact page.
#[derive(Debug, Default, Deserialize)]
pub struct SubscriptionForm {
    topic_id: Option<String>,
    subscribed: Option<String>,
}

/// `POST /contacts/{id}/subscriptions`: someone of the team records a contact's choice about
/// a topic (as the contact would on the preferences page).
pub async fn set_subscription(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted(signed, form): Posted<SubscriptionForm>,
) -> WebResult<Response> {
    let contact = find_contact(&state, signed.workspace.id, &id).await?;
    let topic = form.topic_id.as_deref().and_then(|topic| topic.trim().parse::<i64>().ok());
    let subscribed = match form.subscribed.as_deref() {
        Some("1") => Some(true),
        Some("0") => Some(false),
        _ => None,
    };
    let (Some(topic), Some(subscribed)) = (topic, subscribed) else {
        let problem = Problem {
            section: Section::Subscription,
            message: "choose a topic, and subscribe or unsubscribe".into(),
            interaction: None,
            cadence: None,
        };
        return render_contact(&state, &signed, &id, &ShowParams::default(), Some(problem)).await;
    };
    messages::set_choice(&state, signed.workspace.id, &contact, topic, subscribed).await?;
    Ok(Redirect::to(&format!("/contacts/{}#messages", contact.id)).into_response())
}

/// Whether a trait is already shown in the profile.
fn is_profile_trait(key: &str) -> bool {
    key == "email" || profile::PROFILE_FIELDS.iter().any(|(_, spellings)| spellings.contains(&key))
}

/// One entry of the timeline: "Visited https://acme.io/pricing — Mon 3 Jun 2024", with hits.
fn timeline_item(interaction: &Interaction, tz: &jiff::tz::TimeZone) -> Markup {
    let kind = interaction.kind;
    let manual = kind != InteractionKind::Activity;
    html! {
        li class={ "tl-item tl-" (kind.as_str()) } {
            span.tl-dot aria-hidden="true" {}
            div.tl-body {
                p.tl-text {
                    @if manual { span.tl-kind { (layout::capitalize(kind.as_str())) } " " }
                    span.tl-description { (interaction.description) }
                    (layout::dash())
                    @if manual {
                        (layout::time_tag(interaction.occurred_at, tz))
                    } @else {
                        time datetime=(date_of_day_key(interaction.day).to_string()) { (layout::day(date_of_day_key(interaction.day))) }
                    }
                }
                @if interaction.hits > 1 {
                    p.tl-meta { (interaction.hits) " hits that day" }
                }
            }
        }
    }
}

/// One event of the stream, folded: its type, name and time; unfolded: properties and traits.
fn event_item(shown: &StreamEvent, tz: &jiff::tz::TimeZone) -> Markup {
    let event = &shown.event;
    html! {
        li {
            details.event {
                summary {
                    span class={ "pill pill-" (event.event_type) } { (event.event_type) }
                    " "
                    span.event-name { (event_label(shown)) }
                    span.event-time { (layout::date_time(event.occurred_at, tz)) }
                }
                div.event-body {
                    div {
                        h4 { "Properties" }
                        pre { (layout::pretty_json(&shown.properties)) }
                    }
                    div {
                        h4 { "Traits at the time" }
                        pre { (layout::pretty_json(&shown.traits)) }
                    }
                    p.small.muted { "messageId " code { (event.message_id) } }
                }
            }
        }
    }
}

/// What an event is about: its name, else a page's URL, else an identify's event.
fn event_label(shown: &StreamEvent) -> &str {
    let event = &shown.event;
    let from_payload = |pointer: &str| event.payload.pointer(pointer).and_then(serde_json::Value::as_str);
    event
        .name
        .as_deref()
        .or_else(|| shown.properties.get("url").and_then(serde_json::Value::as_str))
        .or_else(|| from_payload("/context/page/url"))
        .or_else(|| from_payload("/event"))
        .unwrap_or_default()
}

/// The add-interaction form.
#[derive(Debug, Default, Deserialize)]
pub struct InteractionForm {
    kind: Option<String>,
    text: Option<String>,
    when: Option<String>,
}

/// `POST /contacts/{id}/interactions`.
pub async fn add_interaction(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted(signed, form): Posted<InteractionForm>,
) -> WebResult<Response> {
    let workspace = &signed.workspace;
    let contact = find_contact(&state, workspace.id, &id).await?;
    let problem = |message: &str| Problem {
        section: Section::Interaction,
        message: message.to_owned(),
        interaction: Some(&form),
        cadence: None,
    };
    let kind = form.kind.as_deref().and_then(InteractionKind::parse).filter(|kind| *kind != InteractionKind::Activity);
    let Some(kind) = kind else {
        return render_contact(
            &state,
            &signed,
            &id,
            &ShowParams::default(),
            Some(problem("choose a note, call, meeting or email")),
        )
        .await;
    };
    let text = form.text.as_deref().unwrap_or_default().trim().to_owned();
    if text.is_empty() {
        let message = "say what happened, e.g. \"Called about the renewal\"";
        return render_contact(&state, &signed, &id, &ShowParams::default(), Some(problem(message))).await;
    }
    let now = state.clock.now();
    let occurred_at = match form.when.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => now,
        Some(text) => match text.parse::<DateTime>().ok().and_then(|local| local.to_zoned(workspace.tz()).ok()) {
            Some(zoned) if zoned.timestamp() <= now + jiff::SignedDuration::from_mins(MAX_FUTURE_MINUTES) => {
                zoned.timestamp()
            }
            Some(_) => {
                let message = "that time is in the future; log interactions once they have happened";
                return render_contact(&state, &signed, &id, &ShowParams::default(), Some(problem(message))).await;
            }
            None => {
                let message = "give the time as a date and time, e.g. 2024-06-03 16:00";
                return render_contact(&state, &signed, &id, &ShowParams::default(), Some(problem(message))).await;
            }
        },
    };
    state.store.add_interaction(workspace.id, contact.id, NewInteraction { kind, occurred_at, text }).await?;
    Ok(Redirect::to(&format!("/contacts/{}#timeline", contact.id)).into_response())
}

/// The cadence form.
#[derive(Debug, Default, Deserialize)]
pub struct CadenceForm {
    days: Option<String>,
}

/// `POST /contacts/{id}/cadence`: sets or (empty) clears the contact's own cadence.
pub async fn set_cadence(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted(signed, form): Posted<CadenceForm>,
) -> WebResult<Response> {
    let contact = find_contact(&state, signed.workspace.id, &id).await?;
    let typed = form.days.as_deref().map(str::trim).unwrap_or_default();
    let days = if typed.is_empty() { Ok(None) } else { typed.parse::<i64>().map(Some).map_err(|_| ()) };
    let checked = days.ok().and_then(|days| contacts::check_cadence(days).ok());
    let Some(days) = checked else {
        let problem = Problem {
            section: Section::Cadence,
            message: format!("a cadence is a whole number of days from 1 to {MAX_CADENCE_DAYS}"),
            interaction: None,
            cadence: Some(typed),
        };
        return render_contact(&state, &signed, &id, &ShowParams::default(), Some(problem)).await;
    };
    state.store.set_cadence(signed.workspace.id, contact.id, days).await?;
    Ok(Redirect::to(&format!("/contacts/{}#cadence", contact.id)).into_response())
}

/// The delete form.
#[derive(Debug, Default, Deserialize)]
pub struct DeleteForm {
    suppress: Option<String>,
}

/// `POST /contacts/{id}/delete`.
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted(signed, form): Posted<DeleteForm>,
) -> WebResult<Response> {
    let contact = find_contact(&state, signed.workspace.id, &id).await?;
    let suppress = form.suppress.is_some();
    if !state.store.delete_contact(signed.workspace.id, contact.id, suppress).await? {
        return Err(WebError::not_found("this contact was already deleted"));
    }
    Ok(Redirect::to(&layout::link("/contacts", &[("deleted", Some(&contact.email))])).into_response())
}
