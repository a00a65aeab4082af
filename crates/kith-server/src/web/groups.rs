//! Accounts (Segment groups) and Engage audiences.

use axum::extract::{Path, Query, State};
use axum::response::Response;
use kith_core::closeness::days_of_millis;
use kith_core::health::{AtRisk, Band, Health};
use kith_core::time::date_of_day_key;
use kith_store::{Account, OwnerSubject};
use maud::{html, Markup};
use serde::Deserialize;

use super::charts::{self, Point, Segment};
use super::contacts::{contact_table, rows, Extra};
use super::layout::{self, Nav};
use super::owners;
use super::session::Signed;
use super::{page_cursor, CursorParams, WebError, WebResult};
use crate::service::{encode_cursor, groups, health};
use crate::AppState;

/// Members shown on an account or audience page.
const MEMBERS_SHOWN: usize = 50;
/// Entries of an account's recent activity and of an audience's history.
const RECENT_SHOWN: usize = 20;
/// Days of recorded health the account page draws.
const HISTORY_DRAWN: usize = 90;
/// Weeks of member activity the account page draws.
const WEEKS_DRAWN: i64 = 12;

fn account_name(account: &Account) -> &str {
    account.name.as_deref().unwrap_or(&account.group_id)
}

fn account_href(account: &Account) -> String {
    format!("/accounts/{}", layout::encode_query(&account.group_id))
}

/// The band filter and order of the account list.
#[derive(Debug, Default, Deserialize)]
pub struct AccountsQuery {
    /// `at_risk`, `needs_attention` or `healthy`.
    band: Option<String>,
    /// `health` (healthiest first) or `health_asc`; most members first otherwise.
    sort: Option<String>,
    /// Any value: the accounts at risk, by band or by a fall of their score (the band filter
    /// is then ignored).
    falling: Option<String>,
    /// `me`: only the signed-in user's accounts.
    owner: Option<String>,
}

/// A health band as a tag.
fn band_tag(band: Band) -> Markup {
    html! { span class={ "tag tag-band-" (band.as_str()) } { (band.label()) } }
}

/// `GET /accounts`: accounts with their health, filtered by band and sorted by score on demand.
pub async fn accounts(
    State(state): State<AppState>,
    signed: Signed,
    Query(query): Query<AccountsQuery>,
) -> WebResult<Response> {
    let workspace = &signed.workspace;
    let now = state.clock.now();
    let tz = workspace.tz();
    let model = workspace.model();
    let band = match query.band.as_deref().filter(|band| !band.is_empty()) {
        Some(name) => Some(
            Band::parse(name).ok_or_else(|| WebError::bad_request("band is at_risk, needs_attention or healthy"))?,
        ),
        None => None,
    };
    let sort = query.sort.as_deref().filter(|sort| !sort.is_empty());
    let falling = query.falling.as_deref().is_some_and(|falling| !falling.is_empty());
    let mine = owners::wants_mine(query.owner.as_deref())?;
    let mine_param = mine.then_some("me");
    let mut accounts: Vec<(Account, Health, Option<AtRisk>)> = if falling {
        let found = health::at_risk(&state, workspace, now).await?;
        found.into_iter().map(|(account, health, reason)| (account, health, Some(reason))).collect()
    } else {
        let found = health::accounts(&state, workspace, band, now).await?;
        found.into_iter().map(|(account, health)| (account, health, None)).collect()
    };
    if mine {
        let owned = state.store.owners(workspace.id, OwnerSubject::Account).await?;
        accounts.retain(|(account, _, _)| owned.contains(&(account.id, signed.user.id)));
    }
    match sort {
        Some("health") => accounts.sort_by_key(|(_, health, _)| std::cmp::Reverse(health.score)),
        Some("health_asc") => accounts.sort_by_key(|(_, health, _)| health.score),
        None => {}
        Some(_) => return Err(WebError::bad_request("sort is health or health_asc")),
    }
    let band_name = band.map(Band::as_str);
    let bands = [None, Some(Band::AtRisk), Some(Band::NeedsAttention), Some(Band::Healthy)];
    let body = html! {
        (layout::page_header("Accounts", Some(html! { "Companies your contacts belong to, from Segment group calls, with their health." }), None))
        nav.filters aria-label="Health band" {
            @for option in bands {
                @let href = layout::link("/accounts", &[("band", option.map(Band::as_str)), ("sort", sort), ("owner", mine_param)]);
                @if option == band && !falling {
                    strong aria-current="page" { (option.map_or("All", Band::label)) }
                } @else {
                    a href=(href) { (option.map_or("All", Band::label)) }
                }
                " "
            }
            @if falling {
                strong aria-current="page" { "At risk or falling" }
            } @else {
                a href=(layout::link("/accounts", &[("falling", Some("1")), ("owner", mine_param)])) { "At risk or falling" }
            }
            " · "
            (owners::mine_toggle("/accounts", mine, &[("band", band_name), ("sort", sort), ("falling", falling.then_some("1"))]))
            " · sort: "
            a href=(layout::link("/accounts", &[("band", band_name), ("sort", None), ("owner", mine_param)])) { "most members" } " "
            a href=(layout::link("/accounts", &[("band", band_name), ("sort", Some("health_asc")), ("owner", mine_param)])) { "least healthy" } " "
            a href=(layout::link("/accounts", &[("band", band_name), ("sort", Some("health")), ("owner", mine_param)])) { "healthiest" }
        }
        @if accounts.is_empty() && mine {
            p.muted { "You own no account that fits. Choose an owner on an account's page." }
        } @else if accounts.is_empty() && falling {
            p.muted { "No account is at risk or falling now." }
        } @else if accounts.is_empty() && band.is_some() {
            p.muted { "No account is " (band.map_or("", Band::label)) " now." }
        } @else if accounts.is_empty() {
            (layout::empty_state("No accounts yet", html! {
                p { "A " code { "group" } " call links a contact to an account and gives it traits such as its name and plan:" }
                (layout::code_block(
                    "curl -u 'YOUR_WRITE_KEY:' http://127.0.0.1:8080/v1/group \\\n  -d '{\"userId\":\"u1\",\"groupId\":\"acme\",\"traits\":{\"name\":\"Acme Inc\",\"plan\":\"pro\"},\"timestamp\":\"2024-06-03T16:00:00Z\"}'",
                    "Copy the group curl command",
                ))
            }))
        } @else {
            div.table-wrap {
                table.table {
                    thead {
                        tr {
                            th scope="col" { "Account" }
                            th scope="col" { "Health" }
                            th scope="col" { "Members" }
                            th scope="col" { "Closest" }
                            th.hide-sm scope="col" { "Mean score" }
                            th.hide-sm scope="col" { "Plan" }
                            th.hide-sm scope="col" { "Updated" }
                        }
                    }
                    tbody {
                        @for (account, health, reason) in &accounts {
                            tr {
                                td {
                                    a.strong href=(account_href(account)) { (account_name(account)) }
                                    span.sub { (account.group_id) }
                                }
                                td {
                                    strong.health-score { (health.score) } " " (band_tag(health.band))
                                    @if let Some(AtRisk::Dropped { from, day }) = reason {
                                        span.sub { "fell from " (from) " since " (layout::day(date_of_day_key(*day))) }
                                    }
                                }
                                td { (account.member_count) }
                                td { (layout::badge(&model.closeness(account.max_closeness_key, days_of_millis(now.as_millisecond())))) }
                                td.hide-sm { (groups::mean_score(account, &model, now)) }
                                td.hide-sm { (account.traits.get("plan").map(layout::trait_text).unwrap_or_default()) }
                                td.hide-sm { (layout::time_tag(account.updated_at, &tz)) }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page(&signed, Nav::Accounts, "Accounts", body))
}

/// `GET /accounts/{group_id}`: the account, its members closest first, their latest activity.
pub async fn account(
    State(state): State<AppState>,
    signed: Signed,
    Path(group_id): Path<String>,
    Query(errors): Query<owners::FormErrors>,
) -> WebResult<Response> {
    let workspace = &signed.workspace;
    let now = state.clock.now();
    let tz = workspace.tz();
    let groups::AccountMembers { account, members, recent } =
        groups::account(&state, workspace.id, &group_id, MEMBERS_SHOWN, RECENT_SHOWN)
            .await?
            .ok_or_else(|| WebError::not_found(format!("there is no account {group_id:?} in this workspace")))?;
    let model = workspace.model();
    let closest = model.closeness(account.max_closeness_key, days_of_millis(now.as_millisecond()));
    let health_model = health::model(&state, workspace.id).await?;
    let scored = health::health(&state, workspace, &health_model, &account, now).await?;
    let rows = rows(&state, workspace, members).await?;
    let follow_ups = owners::follow_ups(&state, &signed, OwnerSubject::Account, account.id).await?;
    let mut history = state.store.health_history(workspace.id, account.id, HISTORY_DRAWN).await?;
    history.reverse();
    let weekly = groups::weekly_active_members(&state, workspace.id, account.id, now, WEEKS_DRAWN).await?;
    let base = account_href(&account);
    let body = html! {
        p.crumbs { a href="/accounts" { "← Accounts" } }
        (layout::page_header(account_name(&account), Some(html! {
            code { (account.group_id) } " · " (layout::count(account.member_count, "member")) " · mean score " (groups::mean_score(&account, &model, now))
        }), Some(layout::badge(&closest))))
        div.contact-grid {
            div.contact-main {
                (health_card(&scored))
                (activity_card(&history, &weekly, account.member_count, &tz))
                section.card aria-labelledby="members-title" {
                    h2 #members-title { "Members, closest first" }
                    @if rows.is_empty() {
                        p.muted { "No members yet." }
                    } @else {
                        (contact_table(&rows, workspace, now, Extra::LastSeen))
                    }
                    @if account.member_count > MEMBERS_SHOWN as i64 {
                        p.small.muted { "Showing the closest " (MEMBERS_SHOWN) " of " (account.member_count) "." }
                    }
                }
                section.card aria-labelledby="activity-title" {
                    h2 #activity-title { "Recent activity" }
                    @if recent.is_empty() {
                        p.muted { "No activity yet." }
                    } @else {
                        ol.timeline {
                            @for (member, interaction) in &recent {
                                li class={ "tl-item tl-" (interaction.kind.as_str()) } {
                                    span.tl-dot aria-hidden="true" {}
                                    div.tl-body {
                                        p.tl-text {
                                            a href={ "/contacts/" (member.id) } { (member.name.as_deref().unwrap_or(&member.email)) }
                                            ": " (interaction.description) (layout::dash())
                                            (layout::day(date_of_day_key(interaction.day)))
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            aside.contact-side {
                (owners::owner_card(&signed, &base, &follow_ups, errors.owner_error.as_deref()))
                (owners::tasks_card(&signed, &base, &follow_ups, errors.task_error.as_deref(), &tz))
                section.card aria-labelledby="traits-title" {
                    h2 #traits-title { "Traits" }
                    (traits_list(&account.traits))
                    p.small.muted { "First seen " (layout::date(account.created_at, &tz)) "; last group call " (layout::date(account.updated_at, &tz)) "." }
                }
            }
        }
    };
    Ok(layout::page(&signed, Nav::Accounts, account_name(&account), body))
}

/// The health recorded each day and the members active each week, as charts.
fn activity_card(
    history: &[kith_store::HealthRecord],
    weekly: &[(jiff::Timestamp, i64)],
    members: i64,
    tz: &jiff::tz::TimeZone,
) -> Markup {
    let short = |date: jiff::civil::Date| date.strftime("%-d %b").to_string();
    let health: Vec<Point> = history
        .iter()
        .map(|record| Point { label: short(date_of_day_key(record.day)), value: record.score as f64 })
        .collect();
    let active: Vec<Point> = weekly
        .iter()
        .map(|(since, count)| Point { label: short(tz.to_datetime(*since).date()), value: *count as f64 })
        .collect();
    let health_summary = match (history.first(), history.last()) {
        (Some(first), Some(last)) if history.len() > 1 => format!(
            "{} days recorded, from {} on {} to {} on {}",
            history.len(),
            first.score,
            layout::day(date_of_day_key(first.day)),
            last.score,
            layout::day(date_of_day_key(last.day))
        ),
        (Some(only), _) => format!("one day recorded: {} on {}", only.score, layout::day(date_of_day_key(only.day))),
        _ => "nothing recorded yet".to_owned(),
    };
    let last_week = weekly.last().map_or(0, |(_, count)| *count);
    let active_summary = format!("{last_week} of {members} members active in the last 7 days");
    html! {
        section.card #charts aria-labelledby="charts-title" {
            h2 #charts-title { "Over time" }
            @if history.is_empty() {
                p.muted.small { "The health pass records the score once a day; its line starts with the first record." }
            } @else {
                (charts::line("health-history", "Health by day", &health_summary, &health, 100.0))
            }
            @let most = weekly.iter().map(|(_, count)| *count).max().unwrap_or(0).max(1);
            (charts::bars("weekly-active", "Members active per week", &active_summary, &active, most as f64))
        }
    }
}

/// The score, its band, and a bar per factor: how many of its points it earned.
fn health_card(health: &Health) -> Markup {
    let segments: Vec<Segment> = health
        .factors
        .iter()
        .filter(|factor| factor.points > 0.0)
        .map(|factor| Segment { label: factor.label.clone(), value: factor.points })
        .collect();
    let summary = format!("{} of 100 points", health.score);
    html! {
        section.card.health aria-labelledby="health-title" {
            h2 #health-title { "Health " strong.health-score { (health.score) } " " (band_tag(health.band)) }
            (charts::stacked("health-factors", "Points by factor", &summary, &segments, 100.0))
            table.health-factors {
                thead {
                    tr {
                        th scope="col" { "Factor" }
                        th scope="col" { "Points" }
                        th.hide-sm scope="col" { "Measured" }
                    }
                }
                tbody {
                    @for factor in &health.factors {
                        tr {
                            td { (factor.label) span.sub { "weight " (factor.weight) } }
                            td {
                                // The bar is as long as the factor's share of the score, filled
                                // as far as it earned it.
                                span.health-bar style={ "width:" (factor.max_points) "%" }
                                    role="img" aria-label={ (factor.points) " of " (factor.max_points) " points" } {
                                    @let filled = if factor.max_points > 0.0 { 100.0 * factor.points / factor.max_points } else { 0.0 };
                                    span.health-fill style={ "width:" (filled) "%" } {}
                                }
                                " " (factor.points) " / " (factor.max_points)
                            }
                            td.hide-sm { (factor.detail) }
                        }
                    }
                }
            }
            p.small.muted { "The score is the sum of the points. Change the factors and weights with "
                code { "PUT /api/health-model" } "; rate the account with " code { "PUT /api/accounts/{group_id}/rating" } "." }
        }
    }
}

fn traits_list(traits: &serde_json::Map<String, serde_json::Value>) -> Markup {
    html! {
        @if traits.is_empty() {
            p.muted { "No traits." }
        } @else {
            dl.traits {
                @for (key, value) in traits {
                    dt { (key) } dd { (layout::trait_text(value)) }
                }
            }
        }
    }
}

/// `GET /audiences`.
pub async fn audiences(State(state): State<AppState>, signed: Signed) -> WebResult<Response> {
    let tz = signed.workspace.tz();
    let audiences = state.store.audiences(signed.workspace.id).await?;
    let body = html! {
        (layout::page_header("Audiences", Some(html! { "Segment Engage audiences, as kith heard contacts enter and leave them." }), None))
        @if audiences.is_empty() {
            (layout::empty_state("No audiences yet", html! {
                p { "Connect kith as a destination of a Segment Engage audience: its identify calls (with "
                    code { "context.personas.computation_class: \"audience\"" } ") and its "
                    code { "Audience Entered" } " / " code { "Audience Exited" } " tracks appear here, with every member." }
            }))
        } @else {
            div.table-wrap {
                table.table {
                    thead {
                        tr {
                            th scope="col" { "Audience" }
                            th scope="col" { "Members" }
                            th.hide-sm scope="col" { "Entered" }
                            th.hide-sm scope="col" { "Exited" }
                            th.hide-sm scope="col" { "First seen" }
                        }
                    }
                    tbody {
                        @for audience in &audiences {
                            tr {
                                td {
                                    a.strong href={ "/audiences/" (layout::encode_query(&audience.key)) } { (audience.key) }
                                    @if let Some(space) = &audience.space_id { span.sub { "space " (space) } }
                                }
                                td { a href=(layout::link("/contacts", &[("audience", Some(&audience.key))])) { (audience.member_count) } }
                                td.hide-sm { (audience.entered_count) }
                                td.hide-sm { (audience.exited_count) }
                                td.hide-sm { (layout::time_tag(audience.created_at, &tz)) }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page(&signed, Nav::Audiences, "Audiences", body))
}

/// `GET /audiences/{key}`: members closest first, and the latest entries and exits.
pub async fn audience(
    State(state): State<AppState>,
    signed: Signed,
    Path(key): Path<String>,
    Query(params): Query<CursorParams>,
) -> WebResult<Response> {
    let workspace = &signed.workspace;
    let now = state.clock.now();
    let tz = workspace.tz();
    let cursor = page_cursor(params.cursor.as_deref());
    let later = cursor.is_some();
    let groups::AudienceMembers { audience, members: page, history } =
        groups::audience(&state, workspace.id, &key, cursor, MEMBERS_SHOWN, RECENT_SHOWN)
            .await?
            .ok_or_else(|| WebError::not_found(format!("there is no audience {key:?} in this workspace")))?;
    let base = format!("/audiences/{}", layout::encode_query(&key));
    let next = encode_cursor(page.next).map(|cursor| layout::link(&base, &[("cursor", Some(&cursor))]));
    let rows = rows(&state, workspace, page.items).await?;
    let body = html! {
        p.crumbs { a href="/audiences" { "← Audiences" } }
        (layout::page_header(&audience.key, Some(html! {
            (layout::count(audience.member_count, "member")) " · " (audience.entered_count) " entered · " (audience.exited_count) " exited"
        }), Some(html! {
            a.button href=(layout::link("/contacts", &[("audience", Some(&audience.key))])) { "Filter contacts" }
        })))
        div.contact-grid {
            div.contact-main {
                section.card aria-labelledby="members-title" {
                    h2 #members-title { "Members, closest first" }
                    @if rows.is_empty() {
                        p.muted { "Nobody is in this audience now." }
                    } @else {
                        (contact_table(&rows, workspace, now, Extra::LastSeen))
                    }
                    (layout::pager(&base, next, later))
                }
            }
            aside.contact-side {
                section.card aria-labelledby="history-title" {
                    h2 #history-title { "Entries and exits" }
                    @if history.is_empty() {
                        p.muted { "No changes recorded." }
                    } @else {
                        ul.plain.history {
                            @for entry in &history {
                                li {
                                    span class=(if entry.entered { "tag tag-in" } else { "tag tag-out" }) {
                                        (if entry.entered { "entered" } else { "exited" })
                                    }
                                    " " a href={ "/contacts/" (entry.contact_id) } { "contact " (entry.contact_id) }
                                    span.sub { (layout::date_time(entry.at, &tz)) }
                                }
                            }
                        }
                    }
                    @if let Some(id) = &audience.computation_id { p.small.muted { "Engage computation " code { (id) } } }
                }
            }
        }
    };
    Ok(layout::page(&signed, Nav::Audiences, &audience.key, body))
}
