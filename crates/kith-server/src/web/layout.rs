//! The page shell and the small pieces every page uses: navigation, closeness badges, dates
//! in the workspace's time zone, empty states.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use kith_core::closeness::Closeness;
use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::assets;
use super::session::Signed;

/// The sections of the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    /// `/today`.
    Today,
    /// `/contacts` and a contact.
    Contacts,
    /// `/accounts`.
    Accounts,
    /// `/audiences`.
    Audiences,
    /// `/losing-touch`.
    LosingTouch,
    /// `/due`.
    Due,
    /// `/debugger`.
    Debugger,
    /// `/nudges`.
    Nudges,
    /// `/messages`: templates and topics.
    Messages,
    /// `/journeys`.
    Journeys,
    /// `/settings`.
    Settings,
}

const NAV: [(Nav, &str, &str); 11] = [
    (Nav::Today, "/today", "Today"),
    (Nav::Contacts, "/contacts", "Contacts"),
    (Nav::Accounts, "/accounts", "Accounts"),
    (Nav::Audiences, "/audiences", "Audiences"),
    (Nav::LosingTouch, "/losing-touch", "Losing touch"),
    (Nav::Due, "/due", "Due"),
    (Nav::Debugger, "/debugger", "Debugger"),
    (Nav::Nudges, "/nudges", "Nudges"),
    (Nav::Messages, "/messages", "Messages"),
    (Nav::Journeys, "/journeys", "Journeys"),
    (Nav::Settings, "/settings", "Settings"),
];

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="color-scheme" content="light";
            title { (title) " · kith" }
            link rel="icon" href=(assets::url("favicon.svg")) type="image/svg+xml";
            link rel="stylesheet" href=(assets::url("app.css"));
            script src=(assets::url("app.js")) defer {}
        }
    }
}

/// A page of the signed-in app, with the navigation; never cached (it shows private data).
pub fn page(signed: &Signed, active: Nav, title: &str, body: Markup) -> Response {
    page_with_status(signed, active, title, StatusCode::OK, body)
}

/// [`page`] with another status, for a form shown again with what to fix.
pub fn page_with_status(signed: &Signed, active: Nav, title: &str, status: StatusCode, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                a.skip href="#main" { "Skip to content" }
                header.topbar {
                    div.topbar-inner {
                        a.brand href="/contacts" { span.brand-mark aria-hidden="true" {} "kith" }
                        nav.nav aria-label="Main" {
                            @for (section, href, label) in NAV {
                                @if section == active {
                                    a href=(href) aria-current="page" { (label) }
                                } @else {
                                    a href=(href) { (label) }
                                }
                            }
                        }
                        div.account {
                            span.account-email title=(signed.workspace.name) { (signed.user.email) }
                            form method="post" action="/logout" {
                                (csrf(signed))
                                button.button.button-ghost.button-small type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main.container id="main" { (body) }
            }
        }
    };
    let mut response = (status, Html(markup.into_string())).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A page without navigation: sign-in and errors.
pub fn bare_page(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body.bare { (body) }
        }
    }
}

/// The page shown for an error, with the way back.
pub fn error_page(status: StatusCode, message: &str) -> Html<String> {
    let title = match status {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::FORBIDDEN => "Not allowed",
        status if status.is_client_error() => "Something to fix",
        _ => "kith could not do that",
    };
    let body = html! {
        main.auth id="main" {
            div.auth-card {
                div.brand.brand-large { span.brand-mark aria-hidden="true" {} "kith" }
                h1 { (title) }
                p role="alert" { (capitalize(message)) }
                p { a.button.button-primary href="/contacts" { "Back to contacts" } }
            }
        }
    };
    Html(bare_page(title, body).into_string())
}

/// The hidden CSRF field every form of a signed-in page carries.
pub fn csrf(signed: &Signed) -> Markup {
    html! { input type="hidden" name="_csrf" value=(signed.csrf); }
}

/// A page title with an optional line under it and actions on the right.
pub fn page_header(title: &str, lead: Option<Markup>, actions: Option<Markup>) -> Markup {
    html! {
        div.page-header {
            div {
                h1 { (title) }
                @if let Some(lead) = lead { p.lead { (lead) } }
            }
            @if let Some(actions) = actions { div.page-actions { (actions) } }
        }
    }
}

/// A notice above a form: what went wrong, or what was done.
pub fn alert(kind: AlertKind, message: &str) -> Markup {
    let class = match kind {
        AlertKind::Error => "alert alert-error",
        AlertKind::Success => "alert alert-success",
    };
    let role = match kind {
        AlertKind::Error => "alert",
        AlertKind::Success => "status",
    };
    html! { p class=(class) role=(role) { (capitalize(message)) } }
}

/// The tone of an [`alert`].
#[derive(Debug, Clone, Copy)]
pub enum AlertKind {
    /// Something to fix.
    Error,
    /// Something done.
    Success,
}

/// A closeness badge: the bucket's colour and the score.
pub fn badge(closeness: &Closeness) -> Markup {
    let bucket = closeness.bucket.as_str();
    html! {
        span class={ "badge badge-" (bucket) } title={ "Closeness " (closeness.score) " of 100: " (bucket) } {
            span.badge-score { (closeness.score) }
            span.badge-bucket { (bucket) }
        }
    }
}

/// An empty state: what this page will show, and what to do to get there.
pub fn empty_state(title: &str, body: Markup) -> Markup {
    html! {
        section.empty {
            div.empty-mark aria-hidden="true" {}
            h2 { (title) }
            (body)
        }
    }
}

/// The `curl` that sends a first event to this server, stamped `now`.
pub fn first_event_curl(headers: &HeaderMap, now: Timestamp) -> String {
    let host = headers.get(header::HOST).and_then(|value| value.to_str().ok()).unwrap_or("127.0.0.1:8080");
    let scheme = match headers.get("x-forwarded-proto").and_then(|value| value.to_str().ok()) {
        Some("https") => "https",
        _ => "http",
    };
    let now = now.strftime("%Y-%m-%dT%H:%M:%SZ");
    format!(
        "curl -u 'YOUR_WRITE_KEY:' {scheme}://{host}/v1/identify \\\n  \
         -d '{{\"userId\":\"u1\",\"traits\":{{\"email\":\"ada@example.com\",\"name\":\"Ada Lovelace\"}},\
         \"timestamp\":\"{now}\"}}'"
    )
}

/// A block of code with a copy button.
pub fn code_block(text: &str, label: &str) -> Markup {
    html! {
        div.code-block {
            pre { code { (text) } }
            button.button.button-small.copy type="button" data-copy=(text) aria-label=(label) { "Copy" }
        }
    }
}

/// Initials, or the avatar picture when the traits give an https URL.
pub fn avatar(name: &str, picture: Option<&str>, large: bool) -> Markup {
    let class = if large { "avatar avatar-large" } else { "avatar" };
    let initials: String = name
        .split(|c: char| c.is_whitespace() || c == '@' || c == '.')
        .filter(|part| !part.is_empty())
        .take(2)
        .filter_map(|part| part.chars().next())
        .flat_map(char::to_uppercase)
        .collect();
    html! {
        @match picture.filter(|url| url.starts_with("https://")) {
            Some(url) => img class=(class) src=(url) alt="" loading="lazy" referrerpolicy="no-referrer";
            None => span class=(class) aria-hidden="true" { (initials) }
        }
    }
}

/// "Mon 3 Jun 2024" in the workspace's time zone.
pub fn date(time: Timestamp, tz: &TimeZone) -> String {
    time.to_zoned(tz.clone()).strftime("%a %-d %b %Y").to_string()
}

/// "Mon 3 Jun 2024, 16:05" in the workspace's time zone.
pub fn date_time(time: Timestamp, tz: &TimeZone) -> String {
    time.to_zoned(tz.clone()).strftime("%a %-d %b %Y, %H:%M").to_string()
}

/// "16:05:09" in the workspace's time zone.
pub fn clock_time(time: Timestamp, tz: &TimeZone) -> String {
    time.to_zoned(tz.clone()).strftime("%H:%M:%S").to_string()
}

/// "Mon 3 Jun 2024" of a calendar day.
pub fn day(date: Date) -> String {
    date.strftime("%a %-d %b %Y").to_string()
}

/// A `<time>` with the date shown and the exact instant in its `datetime` and tooltip.
pub fn time_tag(time: Timestamp, tz: &TimeZone) -> Markup {
    html! { time datetime=(time.to_string()) title=(date_time(time, tz)) { (date(time, tz)) } }
}

/// "today", "yesterday", "3 days ago", "5 months ago".
pub fn ago(time: Timestamp, now: Timestamp) -> String {
    let days = now.duration_since(time).as_hours() / 24;
    match days {
        i64::MIN..=-1 => "in the future".to_owned(),
        0 => "today".to_owned(),
        1 => "yesterday".to_owned(),
        2..=44 => format!("{days} days ago"),
        45..=547 => format!("{} months ago", (days + 15) / 30),
        _ => format!("{} years ago", (days + 182) / 365),
    }
}

/// "1 day", "7 days".
pub fn days(n: i64) -> String {
    count(n, "day")
}

/// "1 member", "3 members": a count and a regular noun.
pub fn count(n: i64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Percent-encodes a query value.
pub fn encode_query(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `path?k=v&…` with the pairs that have a non-empty value.
pub fn link(path: &str, pairs: &[(&str, Option<&str>)]) -> String {
    let query: Vec<String> = pairs
        .iter()
        .filter_map(|(key, value)| value.filter(|v| !v.is_empty()).map(|v| format!("{key}={}", encode_query(v))))
        .collect();
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", query.join("&"))
    }
}

/// "Next page" and "first page" links of a keyset-paged list.
pub fn pager(first: &str, next: Option<String>, on_later_page: bool) -> Markup {
    html! {
        @if next.is_some() || on_later_page {
            nav.pager aria-label="Pages" {
                @if on_later_page { a.button href=(first) { "← First page" } }
                @if let Some(next) = next { a.button rel="next" href=(next) { "Next page →" } }
            }
        }
    }
}

/// A JSON value, pretty-printed for a `<pre>`.
pub fn pretty_json(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// A trait value as one line of text.
pub fn trait_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// The message with its first letter in capitals (API messages start in lower case).
pub fn capitalize(message: &str) -> String {
    let mut chars = message.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A non-breaking em dash between a description and its date, as Nat's timeline reads.
pub fn dash() -> Markup {
    PreEscaped("&nbsp;— ".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_read_like_a_person_writes_them() {
        let time: Timestamp = "2024-06-03T23:30:00Z".parse().unwrap();
        assert_eq!(date(time, &TimeZone::UTC), "Mon 3 Jun 2024");
        let paris = TimeZone::get("Europe/Paris").unwrap();
        assert_eq!(date(time, &paris), "Tue 4 Jun 2024", "the workspace's time zone decides the day");
        assert_eq!(date_time(time, &paris), "Tue 4 Jun 2024, 01:30");
        assert_eq!(day(Date::constant(2024, 6, 3)), "Mon 3 Jun 2024");
    }

    #[test]
    fn ages_are_rounded_for_people() {
        let now: Timestamp = "2024-06-30T12:00:00Z".parse().unwrap();
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        assert_eq!(ago(at("2024-06-30T01:00:00Z"), now), "today");
        assert_eq!(ago(at("2024-06-29T01:00:00Z"), now), "yesterday");
        assert_eq!(ago(at("2024-06-20T12:00:00Z"), now), "10 days ago");
        assert_eq!(ago(at("2024-01-01T12:00:00Z"), now), "6 months ago");
    }

    #[test]
    fn links_keep_only_set_filters() {
        assert_eq!(link("/contacts", &[("q", Some("ada lovelace")), ("bucket", None)]), "/contacts?q=ada%20lovelace");
        assert_eq!(link("/contacts", &[("q", Some(""))]), "/contacts");
        assert_eq!(encode_query("a&b=c"), "a%26b%3Dc");
    }

    #[test]
    fn initials_come_from_the_name_or_email() {
        assert!(avatar("Ada Lovelace", None, false).into_string().contains(">AL<"));
        assert!(avatar("grace@navy.mil", None, false).into_string().contains(">GN<"));
        assert!(avatar("Ada", Some("https://example.com/a.png"), false).into_string().contains("<img"));
        assert!(!avatar("Ada", Some("javascript:alert(1)"), false).into_string().contains("<img"));
    }
}
