//! What becomes of a message, as a user would see it: the local SMTP server receives it, its
//! open pixel and its click links (signed, leading only where the template pointed) are
//! followed from the received HTML, a click counts as the contact's activity once a day, a
//! tampered link is refused; an SMTP 550 is a hard bounce after which the contact is skipped as
//! suppressed; every outcome reaches the outbound Segment host as an email event; a message
//! held for quiet hours shows as held, then sent; the stats per template and rule add it up.

mod common;

use common::browser::Browser;
use common::outbound::{Mail, Receiver, SmtpSink};
use common::{Options, TestServer};
use jiff::{SignedDuration, Timestamp};
use kith_server::jobs::delivery::SmtpConfig;
use kith_server::web::WebConfig;
use kith_server::Clock;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const PUBLIC_URL: &str = "https://kith.example.com";
const PRICING: &str = "https://shop.example.com/pricing?plan=pro&ref=mail";

fn t0() -> Timestamp {
    "2024-07-01T09:00:00Z".parse().unwrap()
}

async fn server(smtp: &SmtpSink) -> TestServer {
    TestServer::start_with(Options {
        clock: Some(Clock::manual(t0())),
        smtp: Some(SmtpConfig { url: smtp.url.clone(), from: "kith <kith@example.com>".into() }),
        web: WebConfig { public_url: Some(PUBLIC_URL.into()), ..WebConfig::default() },
        ..Options::default()
    })
    .await
}

async fn created(server: &TestServer, path: &str, body: Value) -> i64 {
    let (status, answer) = server.call(Method::POST, path, &body).await;
    assert_eq!(status, StatusCode::CREATED, "POST {path}: {answer}");
    answer["id"].as_i64().unwrap()
}

/// A workspace that sends outbound Segment to `segment`, with a "Welcome" template and a rule
/// sending it on `Signed Up`; Ada (userId `ada`) identified. Returns the template and rule ids.
async fn set_up(server: &TestServer, segment: &Receiver) -> (i64, i64) {
    set_up_sending_to(server, &segment.url, "wk_out").await
}

/// [`set_up`], with the outbound Segment host at `url` and its write key.
async fn set_up_sending_to(server: &TestServer, url: &str, write_key: &str) -> (i64, i64) {
    let (status, body) = server
        .call(Method::PATCH, "/api/workspace", &json!({"segment_host": url, "segment_write_key": write_key}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let topic = created(server, "/api/topics", json!({"name": "Product tips"})).await;
    let template = created(
        server,
        "/api/templates",
        json!({
            "name": "Welcome",
            "topic_id": topic,
            "subject": "Welcome, {{ contact.first_name }}",
            "html": "<html><body><p>Hi {{ contact.first_name }}, see <a href=\"{{ event.link }}\">our prices</a>.</p>\
                     <a href=\"{{ unsubscribe_url }}\">Unsubscribe</a></body></html>",
            "text": "Hi {{ contact.first_name }}: {{ event.link }}\nUnsubscribe: {{ unsubscribe_url }}",
        }),
    )
    .await;
    let rule = created(
        server,
        "/api/rules",
        json!({"name": "Welcome on signup", "when": {"event": {"name": "Signed Up"}},
               "then": [{"message": {"template": template}}]}),
    )
    .await;
    server
        .ingest(
            "/v1/identify",
            &json!({"userId": "ada", "traits": {"email": "ada@example.com", "first_name": "Ada"},
                    "timestamp": t0().to_string()}),
        )
        .await;
    (template, rule)
}

async fn sign_up(server: &TestServer, message_id: &str) {
    let now = server.state.clock.now();
    server
        .ingest(
            "/v1/track",
            &json!({"userId": "ada", "event": "Signed Up", "properties": {"link": PRICING},
                    "timestamp": now.to_string(), "messageId": message_id}),
        )
        .await;
}

/// The body of a received mail with quoted-printable decoded (lettre encodes long lines so).
fn body(mail: &Mail) -> String {
    let raw = mail.data.replace('\r', "").replace("=\n", "");
    let mut out = Vec::new();
    let bytes = raw.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], raw.get(i + 1..i + 3).and_then(|hex| u8::from_str_radix(hex, 16).ok())) {
            (b'=', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The value of the first `attribute="…"` in `html` whose value starts with `prefix`, with
/// `&amp;` decoded, as a mail client reads it.
fn attribute(html: &str, attribute: &str, prefix: &str) -> String {
    let needle = format!("{attribute}=\"{prefix}");
    let start = html.find(&needle).unwrap_or_else(|| panic!("no {needle} in {html}")) + attribute.len() + 2;
    let end = start + html[start..].find('"').unwrap();
    html[start..end].replace("&amp;", "&")
}

/// A path of kith's public URL, to request from the test server.
fn local(server: &TestServer, url: &str) -> String {
    format!("{}{}", server.url, url.strip_prefix(PUBLIC_URL).unwrap_or_else(|| panic!("{url} is not kith's")))
}

/// A client that shows redirects instead of following them, without any session or key.
fn anonymous() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

async fn log(server: &TestServer) -> Vec<Value> {
    server.get("/api/contacts/ada@example.com/messages").await["messages"].as_array().unwrap().clone()
}

/// The track calls the Segment receiver got, named `event`.
fn tracks(segment: &Receiver, event: &str) -> Vec<Value> {
    segment
        .received()
        .iter()
        .flat_map(|request| request.json["batch"].as_array().cloned().unwrap_or_default())
        .filter(|call| call["event"] == event)
        .collect()
}

async fn opens_and_clicks_are_tracked_and_reach_segment() {
    let smtp = SmtpSink::start().await;
    let segment = Receiver::start().await;
    let server = server(&smtp).await;
    let (template, rule) = set_up(&server, &segment).await;
    sign_up(&server, "signup-1").await;
    server.run_jobs().await;
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1);
    let html = body(&mails[0]);
    let pixel = attribute(&html, "src", &format!("{PUBLIC_URL}/m/"));
    let click = attribute(&html, "href", &format!("{PUBLIC_URL}/m/"));
    assert!(click.contains("/click/"), "{click}");
    assert!(html.contains(&format!("{PUBLIC_URL}/unsubscribe/")), "the unsubscribe link is left as it is: {html}");
    assert!(!html.contains(&format!("href=\"{}\"", PRICING.replace('&', "&amp;"))), "the link is tracked: {html}");
    assert!(body(&mails[0]).contains(&format!("Hi Ada: {PRICING}")), "the text part is left as it is");

    let sent = log(&server).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["outcome"], "sent");
    let email_id = sent[0]["email_id"].as_str().unwrap().to_owned();
    assert_eq!(sent[0]["subject"], "Welcome, Ada");
    assert_eq!(sent[0]["opens"], 0);

    // The pixel, fetched twice by a mail client without any session: the first open is kept,
    // the second counted.
    let client = anonymous();
    for _ in 0..2 {
        let answer = client.get(local(&server, &pixel)).send().await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
        assert_eq!(answer.headers()["content-type"], "image/gif");
        assert!(answer.headers()["cache-control"].to_str().unwrap().contains("no-store"));
        assert!(answer.bytes().await.unwrap().starts_with(b"GIF89a"));
    }
    let opened = &log(&server).await[0];
    assert_eq!((opened["opens"].as_i64(), opened["opened_at"].as_str()), (Some(2), Some(t0().to_string().as_str())));

    // The next day, Ada clicks twice: each click leads to the template's link and is recorded,
    // and her timeline gains one activity for the day, as any event would give.
    server.state.clock.advance(SignedDuration::from_hours(24));
    let before = server.timeline("ada@example.com").await;
    for _ in 0..2 {
        let answer = client.get(local(&server, &click)).send().await.unwrap();
        assert_eq!(answer.status(), StatusCode::FOUND);
        assert_eq!(answer.headers()["location"], PRICING);
        assert!(answer.headers()["cache-control"].to_str().unwrap().contains("no-store"));
    }
    let clicked = &log(&server).await[0];
    assert_eq!(clicked["clicks"], 2, "{clicked}");
    assert_eq!(clicked["clicked_at"], (t0() + SignedDuration::from_hours(24)).to_string());
    let after = server.timeline("ada@example.com").await;
    assert_eq!(after.len(), before.len() + 1, "one interaction for the day: {after:?}");
    assert_eq!(after[0]["day"], "2024-07-02");
    assert_eq!(after[0]["kind"], "activity");
    assert_eq!(after[0]["hits"], 2, "{after:?}");
    assert_eq!(after[0]["description"], "Email Link Clicked", "{after:?}");

    // Tampered links are refused, never redirected.
    let tampered_url = click.replace("shop.example.com", "evil.example.com");
    assert_ne!(tampered_url, click);
    let signature_at = click.find("/click/").unwrap() + "/click/".len();
    let mut tampered_signature = click.clone();
    let flipped = if &click[signature_at..=signature_at] == "0" { "1" } else { "0" };
    tampered_signature.replace_range(signature_at..=signature_at, flipped);
    let other_target = format!("{}?url=https%3A%2F%2Fevil.example.com%2F", &click[..click.find('?').unwrap()]);
    let no_target = click[..click.find('?').unwrap()].to_owned();
    let other_message = click.replace(&email_id, &"0".repeat(32));
    for bad in [&tampered_url, &tampered_signature, &other_target, &no_target, &other_message] {
        let answer = client.get(local(&server, bad)).send().await.unwrap();
        assert_eq!(answer.status(), StatusCode::NOT_FOUND, "{bad}");
        assert!(answer.headers().get("location").is_none());
    }
    let forged_pixel = pixel.replace(&email_id, &"1".repeat(32));
    assert_eq!(client.get(local(&server, &forged_pixel)).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    let garbage = format!("{}/m/{}/not-an-id/open/zz", server.url, server.workspace);
    assert_eq!(client.get(garbage).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    assert_eq!(log(&server).await[0]["clicks"], 2, "refused links record nothing");

    // One-click unsubscribe from the mail's header.
    let unsubscribe = attribute(&html, "href", &format!("{PUBLIC_URL}/unsubscribe/"));
    let answer = client
        .post(local(&server, &unsubscribe))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert!(log(&server).await[0]["unsubscribed_at"].is_string());

    // The email events reach the outbound Segment host, named by Segment's email spec.
    server.run_jobs().await;
    let expected = [
        ("Email Delivered", t0()),
        ("Email Opened", t0()),
        ("Email Link Clicked", t0() + SignedDuration::from_hours(24)),
        ("Unsubscribed", t0() + SignedDuration::from_hours(24)),
    ];
    for (event, at) in expected {
        let calls = tracks(&segment, event);
        let wanted = if event == "Email Link Clicked" { 2 } else { 1 };
        assert_eq!(calls.len(), wanted, "{event}: {:?}", segment.received());
        let call = &calls[0];
        assert_eq!(call["type"], "track");
        assert_eq!(call["userId"], "ada", "{call}");
        assert_eq!(call["context"]["traits"]["email"], "ada@example.com");
        assert_eq!(call["timestamp"], at.to_string());
        let properties = &call["properties"];
        assert_eq!(properties["email_id"], email_id.as_str(), "{call}");
        assert_eq!(properties["email_subject"], "Welcome, Ada");
        assert_eq!(properties["campaign_id"], format!("rule-{rule}"));
        assert_eq!(properties["campaign_name"], "Welcome on signup");
        assert_eq!(properties["template_id"], template);
        assert_eq!(properties["template_name"], "Welcome");
    }
    assert_eq!(tracks(&segment, "Email Link Clicked")[0]["properties"]["link_url"], PRICING);
    assert_eq!(segment.received()[0].headers["authorization"].to_str().unwrap(), common::basic("wk_out"));

    // The stats add it up, per template and per rule, in the API and on the page.
    let counts = json!({"sent": 1, "delivered": 1, "opened": 1, "clicked": 1, "unsubscribed": 1, "bounced": 0,
                        "skipped": 0, "held": 0});
    for path in [format!("/api/templates/{template}/stats"), format!("/api/rules/{rule}/stats")] {
        let mut stats = server.get(&path).await;
        let name = stats.as_object_mut().unwrap().remove("name");
        stats.as_object_mut().unwrap().remove("id");
        assert_eq!(stats, counts, "{path}");
        assert!(name.is_some_and(|name| name == "Welcome" || name == "Welcome on signup"));
    }
    let (status, body) = server.api(&format!("/api/templates/{}/stats", template + 1)).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")), "{body}");
    let password = "correct horse battery";
    kith_server::service::users::create_user(server.state.store.as_ref(), server.workspace, "me@example.com", password)
        .await
        .unwrap();
    let mut browser = Browser::new(&server);
    browser.sign_in("me@example.com", password).await;
    let page = browser.get("/messages/stats").await;
    assert_eq!(page.status, StatusCode::OK);
    for shown in ["Welcome", "Welcome on signup", "Delivered", "Unsubscribed", r#"href="/messages""#] {
        assert!(page.body.contains(shown), "{shown:?}: {}", page.body);
    }
    assert_eq!(browser.get("/contacts").await.status, StatusCode::OK);
    assert!(anonymous().get(format!("{}/messages/stats", server.url)).send().await.unwrap().status().is_redirection());
    server.stop().await;
}

async fn a_hard_bounce_suppresses_the_contact_and_a_transient_failure_retries() {
    let smtp = SmtpSink::start().await;
    let segment = Receiver::start().await;
    let server = server(&smtp).await;
    let (template, rule) = set_up(&server, &segment).await;

    // A 4xx is transient: the outbox retries, nothing is recorded as bounced.
    smtp.refuse("ada@example.com", "451 4.3.0 try again later");
    sign_up(&server, "signup-1").await;
    let report = server.run_jobs().await;
    assert_eq!((report.deliveries.retried, report.deliveries.bounced), (1, 0), "{report:?}");
    assert!(log(&server).await.is_empty());

    // A 550 is a hard bounce: recorded with the server's reply, the delivery given up.
    smtp.refuse("ada@example.com", "550 5.1.1 <ada@example.com>: no such mailbox");
    server.state.clock.advance(SignedDuration::from_hours(1));
    let report = server.run_jobs().await;
    assert_eq!((report.deliveries.bounced, report.deliveries.retried), (1, 0), "{report:?}");
    let bounced = &log(&server).await[0];
    assert_eq!(bounced["outcome"], "bounced", "{bounced}");
    let reason = bounced["reason"].as_str().unwrap();
    assert!(reason.contains("550") && reason.contains("no such mailbox"), "{reason}");
    let failed = server.get("/api/deliveries?status=failed").await;
    assert!(failed[0]["last_error"].as_str().unwrap().starts_with("hard bounce: "), "{failed}");

    // The next message is skipped as suppressed, even once the server would take it.
    smtp.refuse("ada@example.com", "");
    sign_up(&server, "signup-2").await;
    let report = server.run_jobs().await;
    assert_eq!(report.deliveries.skipped, 1, "{report:?}");
    assert!(smtp.mails().is_empty());
    let messages = server.get("/api/contacts/ada@example.com/messages").await;
    assert_eq!(messages["messages"][0]["outcome"], "skipped");
    assert_eq!(messages["messages"][0]["reason"], "suppressed");
    assert_eq!(messages["preferences"][0]["subscribed"], false, "{messages}");

    server.run_jobs().await;
    let calls = tracks(&segment, "Email Bounced");
    assert_eq!(calls.len(), 1, "{:?}", segment.received());
    assert_eq!(calls[0]["userId"], "ada");
    assert_eq!(calls[0]["context"]["traits"]["email"], "ada@example.com");
    assert_eq!(calls[0]["properties"]["email_subject"], "Welcome, Ada");
    assert_eq!(calls[0]["properties"]["email_id"], bounced["email_id"]);
    assert_eq!(calls[0]["properties"]["campaign_id"], format!("rule-{rule}"));
    assert!(tracks(&segment, "Email Delivered").is_empty());

    let stats = server.get(&format!("/api/templates/{template}/stats")).await;
    assert_eq!(
        (&stats["sent"], &stats["delivered"], &stats["bounced"], &stats["skipped"]),
        (&json!(1), &json!(0), &json!(1), &json!(1)),
        "{stats}"
    );
    server.stop().await;
}

async fn a_message_held_for_quiet_hours_shows_as_held_then_sent() {
    let smtp = SmtpSink::start().await;
    let segment = Receiver::start().await;
    let server = server(&smtp).await;
    let (template, rule) = set_up(&server, &segment).await;
    // Quiet from 08:30 to 10:00 in the workspace's zone (UTC); the clock stands at 09:00.
    let limits = json!({"quiet_hours": {"start": "08:30", "end": "10:00"}});
    let (status, body) = server.call(Method::PUT, "/api/workspace/message-limits", &limits).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    sign_up(&server, "signup-1").await;
    assert_eq!(server.run_jobs().await.deliveries.held, 1);
    let held = log(&server).await;
    assert_eq!(held.len(), 1);
    assert_eq!(held[0]["outcome"], "held", "{held:?}");
    assert_eq!(held[0]["send_at"], "2024-07-01T10:00:00Z");
    assert_eq!(held[0]["at"], t0().to_string());
    assert_eq!((&held[0]["rule_id"], &held[0]["template_id"]), (&json!(rule), &json!(template)));
    assert!(held[0]["topic_id"].is_i64());
    assert_eq!(server.get(&format!("/api/rules/{rule}/stats")).await["held"], 1);
    // The contact's page says the same.
    let password = "correct horse battery";
    kith_server::service::users::create_user(server.state.store.as_ref(), server.workspace, "me@example.com", password)
        .await
        .unwrap();
    let mut browser = Browser::new(&server);
    browser.sign_in("me@example.com", password).await;
    let id = server.contact("ada@example.com").await["id"].as_i64().unwrap();
    let page = browser.get(&format!("/contacts/{id}")).await;
    assert!(page.body.contains(">held</span>") && page.body.contains("until "), "{}", page.body);

    // Nothing goes while it is quiet; at 10:00 it goes, and the same entry says so.
    server.state.clock.advance(SignedDuration::from_mins(30));
    server.run_jobs().await;
    assert!(smtp.mails().is_empty());
    server.state.clock.advance(SignedDuration::from_mins(30));
    server.run_jobs().await;
    assert_eq!(smtp.mails().len(), 1);
    let sent = log(&server).await;
    assert_eq!(sent.len(), 1, "one entry for the message: {sent:?}");
    assert_eq!(sent[0]["outcome"], "sent");
    assert_eq!(sent[0]["at"], "2024-07-01T10:00:00Z");
    assert!(sent[0]["send_at"].is_null());
    let stats = server.get(&format!("/api/rules/{rule}/stats")).await;
    assert_eq!((&stats["held"], &stats["delivered"]), (&json!(0), &json!(1)), "{stats}");

    // A held message that cannot go when its time comes (its rule and then its template were
    // deleted meanwhile; a template a rule sends cannot be) does not stay held: its entry says
    // it failed, and why.
    server.state.clock.advance(SignedDuration::from_hours(23));
    sign_up(&server, "signup-2").await;
    server.run_jobs().await;
    assert_eq!(log(&server).await[0]["outcome"], "held");
    let (status, body) = server.call(Method::DELETE, &format!("/api/templates/{template}"), &json!({})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("template_in_use")), "{body}");
    let (status, _) = server.call(Method::DELETE, &format!("/api/rules/{rule}"), &json!({})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = server.call(Method::DELETE, &format!("/api/templates/{template}"), &json!({})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    server.state.clock.advance(SignedDuration::from_hours(1));
    server.run_jobs().await;
    let failed = log(&server).await;
    assert_eq!(failed.len(), 2);
    assert_eq!(failed[0]["outcome"], "failed", "{failed:?}");
    assert!(failed[0]["reason"].as_str().unwrap().contains("no longer exists"), "{failed:?}");
    assert!(failed[0]["send_at"].is_null());
    server.stop().await;
}

/// The email events, sent to a second kith as its Segment source: they land in Ada's event
/// stream there, marked as kith's own, so they never count as her activity nor fire its rules.
async fn the_email_events_reach_a_second_kith() {
    let smtp = SmtpSink::start().await;
    let server = server(&smtp).await;
    let second = TestServer::start().await;
    second
        .ingest(
            "/v1/identify",
            &json!({"userId": "ada", "traits": {"email": "ada@example.com"}, "messageId": "i1", "timestamp": t0().to_string()}),
        )
        .await;
    set_up_sending_to(&server, &second.url, &second.write_key).await;
    sign_up(&server, "signup-1").await;
    server.run_jobs().await;
    let html = body(&smtp.mails()[0]);
    let client = anonymous();
    let pixel = attribute(&html, "src", &format!("{PUBLIC_URL}/m/"));
    assert_eq!(client.get(local(&server, &pixel)).send().await.unwrap().status(), StatusCode::OK);
    let click = attribute(&html, "href", &format!("{PUBLIC_URL}/m/"));
    assert!(client.get(local(&server, &click)).send().await.unwrap().status().is_redirection());
    server.run_jobs().await;

    let events = second.get("/api/contacts/ada@example.com/events?limit=50").await;
    let names: Vec<&str> = events["items"].as_array().unwrap().iter().filter_map(|e| e["name"].as_str()).collect();
    for wanted in ["Email Delivered", "Email Opened", "Email Link Clicked"] {
        assert!(names.contains(&wanted), "{wanted} in {events}");
    }
    let delivered = events["items"].as_array().unwrap().iter().find(|e| e["name"] == "Email Delivered").unwrap();
    assert_eq!(delivered["properties"]["email_subject"], "Welcome, Ada", "{delivered}");
    assert_eq!(second.timeline("ada@example.com").await.len(), 1, "only the identify counts as her activity there");
    server.stop().await;
    second.stop().await;
}

/// A spam complaint the email provider reports through Segment stops every later message.
async fn a_spam_complaint_from_the_email_provider_suppresses_the_contact() {
    let smtp = SmtpSink::start().await;
    let segment = Receiver::start().await;
    let server = server(&smtp).await;
    set_up(&server, &segment).await;
    sign_up(&server, "signup-1").await;
    server.run_jobs().await;
    assert_eq!(smtp.mails().len(), 1);

    // As SendGrid's Segment source sends it: a track on the person, named by the email spec.
    server
        .ingest(
            "/v1/track",
            &json!({"userId": "ada", "event": "Email Marked as Spam", "messageId": "complaint-1",
                    "properties": {"email_subject": "Welcome, Ada"},
                    "timestamp": server.state.clock.now().to_string()}),
        )
        .await;
    sign_up(&server, "signup-2").await;
    let report = server.run_jobs().await;
    assert_eq!(report.deliveries.skipped, 1, "{report:?}");
    assert_eq!(smtp.mails().len(), 1, "no second mail");
    let messages = server.get("/api/contacts/ada@example.com/messages").await;
    assert_eq!(
        (messages["messages"][0]["outcome"].as_str(), messages["messages"][0]["reason"].as_str()),
        (Some("skipped"), Some("suppressed"))
    );
    assert!(tracks(&segment, "Email Marked as Spam").is_empty(), "a complaint is not sent back where it came from");
    server.stop().await;
}

backend_tests!(
    a_spam_complaint_from_the_email_provider_suppresses_the_contact,
    the_email_events_reach_a_second_kith,
    opens_and_clicks_are_tracked_and_reach_segment,
    a_hard_bounce_suppresses_the_contact_and_a_transient_failure_retries,
    a_message_held_for_quiet_hours_shows_as_held_then_sent,
);
