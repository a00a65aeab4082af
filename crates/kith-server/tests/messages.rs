//! Messages to contacts: templates rendered over the contact, the triggering event and the
//! account, sent by a rule to the contact's own email through a local SMTP server, with the
//! workspace's sender and RFC 8058 unsubscribe headers; the signed unsubscribe link and the
//! one-click POST work without a session and stop the next message, which is recorded as
//! skipped with its reason; consent for opt-in topics, also from Segment traits; templates with
//! a syntax error are refused with line and column.

mod common;

use common::browser::Browser;
use common::outbound::{Mail, SmtpSink};
use common::{Options, TestServer};
use jiff::{SignedDuration, Timestamp};
use kith_server::jobs::delivery::SmtpConfig;
use kith_server::web::WebConfig;
use kith_server::Clock;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const PUBLIC_URL: &str = "https://kith.example.com";

fn t0() -> Timestamp {
    "2024-07-01T09:00:00Z".parse().unwrap()
}

fn at(offset_hours: f64) -> String {
    (t0() + SignedDuration::from_secs_f64(offset_hours * 3600.0)).to_string()
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

async fn created(server: &TestServer, path: &str, body: Value) -> Value {
    let (status, answer) = server.call(Method::POST, path, &body).await;
    assert_eq!(status, StatusCode::CREATED, "POST {path}: {answer}");
    answer
}

async fn topic(server: &TestServer, name: &str, opt_in: bool) -> i64 {
    created(server, "/api/topics", json!({"name": name, "opt_in": opt_in})).await["id"].as_i64().unwrap()
}

async fn template(server: &TestServer, topic: i64) -> i64 {
    created(
        server,
        "/api/templates",
        json!({
            "name": "Welcome",
            "topic_id": topic,
            "subject": "Welcome, {{ contact.first_name }}",
            "html": "<p>Hi {{ contact.first_name }}, your {{ event.plan }} plan at {{ account.name }}.</p>\n\
                     {% for tag in contact.tags %}<i>{{ tag }}</i>{% endfor %}\n\
                     <a href=\"{{ unsubscribe_url }}\">Unsubscribe</a>",
            "text": "Hi {{ contact.first_name }}, your {{ event.plan }} plan at {{ account.name }}.\n\
                     {% if contact.tags %}Tagged.{% endif %}\nUnsubscribe: {{ unsubscribe_url }}",
        }),
    )
    .await["id"]
        .as_i64()
        .unwrap()
}

async fn message_rule(server: &TestServer, template: i64) {
    created(
        server,
        "/api/rules",
        json!({"name": "Welcome on signup", "when": {"event": {"name": "Signed Up"}},
               "then": [{"message": {"template": template}}]}),
    )
    .await;
}

async fn identify(server: &TestServer, traits: Value) {
    server.ingest("/v1/identify", &json!({"userId": "ada", "traits": traits, "timestamp": at(0.0)})).await;
}

async fn sign_up(server: &TestServer, message_id: &str) {
    server
        .ingest(
            "/v1/track",
            &json!({"userId": "ada", "event": "Signed Up", "properties": {"plan": "pro"}, "timestamp": at(0.0),
                    "messageId": message_id}),
        )
        .await;
}

/// A header of a received mail, its folded lines joined.
fn header(mail: &Mail, name: &str) -> Option<String> {
    let head = mail.data.split("\n\n").next().unwrap_or_default().replace("\r", "");
    let unfolded = head.replace("\n ", " ").replace("\n\t", " ");
    let prefix = format!("{}:", name.to_ascii_lowercase());
    unfolded
        .lines()
        .find(|line| line.to_ascii_lowercase().starts_with(&prefix))
        .map(|line| line[prefix.len()..].trim().to_owned())
}

/// The body of a received mail with quoted-printable decoded (lettre encodes long lines so).
fn body(mail: &Mail) -> String {
    let raw = mail.data.replace("\r", "").replace("=\n", "");
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

async fn messages(server: &TestServer) -> Value {
    server.get("/api/contacts/ada@example.com/messages").await
}

async fn a_rule_sends_the_rendered_template_and_unsubscribing_stops_the_next() {
    let smtp = SmtpSink::start().await;
    let server = server(&smtp).await;
    let (status, sender) = server
        .call(
            Method::PUT,
            "/api/workspace/sender",
            &json!({"from_name": "Acme", "from_address": "hello@acme.example", "reply_to": "help@acme.example"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{sender}");
    let tips = topic(&server, "Product tips", false).await;
    let welcome = template(&server, tips).await;
    message_rule(&server, welcome).await;
    identify(&server, json!({"email": "ada@example.com", "first_name": "Ada", "tags": ["vip", "beta"]})).await;
    server
        .ingest(
            "/v1/group",
            &json!({"userId": "ada", "groupId": "acme", "traits": {"name": "Acme Inc"}, "timestamp": at(0.0)}),
        )
        .await;
    sign_up(&server, "signup-1").await;
    assert_eq!(server.run_jobs().await.deliveries.sent, 1);

    let mails = smtp.mails();
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert!(mail.to[0].contains("ada@example.com"), "{:?}", mail.to);
    assert!(mail.from.contains("hello@acme.example"), "{}", mail.from);
    assert_eq!(header(mail, "From").as_deref(), Some("Acme <hello@acme.example>"), "{}", mail.data);
    assert_eq!(header(mail, "Reply-To").as_deref(), Some("help@acme.example"));
    assert_eq!(header(mail, "Subject").as_deref(), Some("Welcome, Ada"));
    assert_eq!(header(mail, "List-Unsubscribe-Post").as_deref(), Some("List-Unsubscribe=One-Click"));
    let list_unsubscribe = header(mail, "List-Unsubscribe").expect("List-Unsubscribe");
    let url = list_unsubscribe.trim_start_matches('<').trim_end_matches('>');
    assert!(url.starts_with(&format!("{PUBLIC_URL}/unsubscribe/")), "{url}");
    let text = body(mail);
    assert!(text.contains("multipart/alternative"), "{text}");
    assert!(text.contains("Content-Type: text/plain") && text.contains("Content-Type: text/html"), "{text}");
    assert!(text.contains("Hi Ada, your pro plan at Acme Inc.\nTagged."), "{text}");
    assert!(text.contains("<p>Hi Ada, your pro plan at Acme Inc.</p>"), "{text}");
    assert!(text.contains("<i>vip</i><i>beta</i>"), "{text}");
    assert!(text.contains(&format!("<a href=\"{url}\">")), "the link is in the HTML body: {text}");
    assert!(text.contains(&format!("Unsubscribe: {url}")), "and in the text body: {text}");
    let log = messages(&server).await;
    assert_eq!(log["messages"][0]["outcome"], "sent", "{log}");
    assert_eq!(log["preferences"][0]["subscribed"], true, "{log}");

    // The link, opened without any session or key, shows the preferences.
    let path = &url[PUBLIC_URL.len()..];
    let anonymous = reqwest::Client::new();
    let page = anonymous.get(format!("{}{path}", server.url)).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("Product tips") && html.contains("checked"), "{html}");
    // A link with another signature is refused.
    let forged = format!("{}{}0000", server.url, &path[..path.len() - 4]);
    assert_eq!(anonymous.get(&forged).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    assert_eq!(
        anonymous.post(&forged).body("List-Unsubscribe=One-Click").send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );

    // The one-click POST a mail client sends unsubscribes.
    let one_click = anonymous
        .post(format!("{}{path}", server.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(one_click.status(), StatusCode::OK);
    sign_up(&server, "signup-2").await;
    let report = server.run_jobs().await;
    assert_eq!((report.deliveries.sent, report.deliveries.skipped), (0, 1), "{report:?}");
    assert_eq!(smtp.mails().len(), 1, "no second message");
    let log = messages(&server).await;
    assert_eq!(log["messages"][0]["outcome"], "skipped", "{log}");
    assert_eq!(log["messages"][0]["reason"], "unsubscribed", "{log}");
    assert_eq!(log["preferences"][0]["subscribed"], false, "{log}");
    let skipped = server.get("/api/deliveries?status=skipped").await;
    assert_eq!(skipped[0]["last_error"], "unsubscribed", "{skipped}");

    // The preferences form subscribes again.
    let saved = anonymous
        .post(format!("{}{path}", server.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("save=1&topic-{tips}=on"))
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status(), StatusCode::OK);
    sign_up(&server, "signup-3").await;
    assert_eq!(server.run_jobs().await.deliveries.sent, 1);
    assert_eq!(smtp.mails().len(), 2);
    server.stop().await;
}

async fn opt_in_topics_need_consent_which_traits_can_give_or_take() {
    let smtp = SmtpSink::start().await;
    let server = server(&smtp).await;
    let billing = topic(&server, "Billing", true).await;
    let welcome = template(&server, billing).await;
    message_rule(&server, welcome).await;
    identify(&server, json!({"email": "ada@example.com", "first_name": "Ada"})).await;
    sign_up(&server, "s1").await;
    assert_eq!(server.run_jobs().await.deliveries.skipped, 1);
    assert_eq!(messages(&server).await["messages"][0]["reason"], "no_consent");

    identify(&server, json!({"subscriptions": {"Billing": true}})).await;
    sign_up(&server, "s2").await;
    assert_eq!(server.run_jobs().await.deliveries.sent, 1);
    assert_eq!(smtp.mails().len(), 1);
    assert!(header(&smtp.mails()[0], "From").unwrap().contains("kith@example.com"), "smtp_from without a sender");

    identify(&server, json!({"unsubscribed": true})).await;
    sign_up(&server, "s3").await;
    assert_eq!(server.run_jobs().await.deliveries.skipped, 1);
    let log = messages(&server).await;
    assert_eq!(log["messages"][0]["reason"], "unsubscribed", "{log}");
    assert_eq!(log["messages"].as_array().unwrap().len(), 3);
    assert_eq!(smtp.mails().len(), 1);

    // The contact's page shows the same.
    let password = "correct horse battery";
    kith_server::service::users::create_user(server.state.store.as_ref(), server.workspace, "me@example.com", password)
        .await
        .unwrap();
    let mut browser = Browser::new(&server);
    browser.sign_in("me@example.com", password).await;
    let id = server.contact("ada@example.com").await["id"].as_i64().unwrap();
    let page = browser.get(&format!("/contacts/{id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    let log = &page.body[page.body.find("message-log").expect("the message log")..];
    for shown in [">sent<", ">skipped<", ">no consent<", ">unsubscribed<"] {
        assert!(log.contains(shown), "{shown:?} in the contact's message log: {log}");
    }
    assert!(page.body.contains("<strong>Billing</strong>"), "the topics are listed");
    server.stop().await;
}

async fn templates_are_checked_when_saved_and_previewed_for_a_real_contact() {
    let smtp = SmtpSink::start().await;
    let server = server(&smtp).await;
    let tips = topic(&server, "Tips", false).await;
    let (status, body) = server.call(Method::POST, "/api/topics", &json!({"name": "Tips"})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("conflict")), "{body}");
    let (status, body) = server.call(Method::POST, "/api/topics", &json!({"name": " "})).await;
    assert_eq!((status, body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("name")), "{body}");

    let broken = json!({"name": "Broken", "topic_id": tips, "subject": "Hi",
        "html": "<p>Hello</p>\n<p>{{ contact.name }</p>", "text": "x"});
    let (status, body) = server.call(Method::POST, "/api/templates", &broken).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], "template_syntax");
    assert_eq!(body["field"], "html");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("line 2, column "), "{message}");
    let unclosed = json!({"name": "B", "topic_id": tips, "subject": "{% if x %}", "html": "", "text": ""});
    let (status, body) = server.call(Method::POST, "/api/templates", &unclosed).await;
    assert_eq!((status, body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("subject")), "{body}");
    let elsewhere = json!({"name": "B", "topic_id": 999, "subject": "x", "html": "", "text": ""});
    let (status, body) = server.call(Method::POST, "/api/templates", &elsewhere).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("unknown_topic")), "{body}");
    let (status, body) = server.call(Method::POST, "/api/templates", &json!({"name": "x"})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_json")), "{body}");

    let welcome = template(&server, tips).await;
    identify(&server, json!({"email": "ada@example.com", "first_name": "Ada", "tags": ["x"]})).await;
    let (status, preview) = server
        .call(Method::POST, &format!("/api/templates/{welcome}/preview"), &json!({"contact": "ada@example.com"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(preview["subject"], "Welcome, Ada");
    assert!(preview["text"].as_str().unwrap().contains(&format!("Unsubscribe: {PUBLIC_URL}/unsubscribe/")));
    assert!(preview["html"].as_str().unwrap().contains("<i>x</i>"));
    let (status, _) = server
        .call(Method::POST, &format!("/api/templates/{welcome}/preview"), &json!({"contact": "nobody@example.com"}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let mut changed = server.get(&format!("/api/templates/{welcome}")).await;
    assert_eq!(changed["topic_id"], tips);
    changed["subject"] = json!("Hello {{ contact.email }}");
    for field in ["id", "created_at", "updated_at"] {
        changed.as_object_mut().unwrap().remove(field);
    }
    let (status, body) = server.call(Method::PUT, &format!("/api/templates/{welcome}"), &changed).await;
    assert_eq!((status, body["subject"].as_str()), (StatusCode::OK, Some("Hello {{ contact.email }}")), "{body}");
    assert_eq!(server.get("/api/templates").await.as_array().unwrap().len(), 1);

    let (status, body) =
        server.call(Method::PUT, "/api/workspace/sender", &json!({"from_address": "not an address"})).await;
    assert_eq!((status, body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("from_address")), "{body}");
    let (status, body) = server
        .call(
            Method::POST,
            "/api/rules",
            &json!({"name": "R", "when": {"becomes_due": {}},
        "then": [{"message": {"template": 0}}]}),
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_rule")), "{body}");
    let (status, body) = server
        .call(
            Method::POST,
            "/api/rules",
            &json!({"name": "R", "when": {"becomes_due": {}},
        "then": [{"message": {"template": welcome + 1}}]}),
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("unknown_template")), "{body}");

    let (status, _) = server.call(Method::DELETE, &format!("/api/templates/{welcome}"), &json!({})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = server.api(&format!("/api/templates/{welcome}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    server.stop().await;
}

async fn the_sender_is_set_on_the_settings_page() {
    let smtp = SmtpSink::start().await;
    let server = server(&smtp).await;
    let password = "correct horse battery";
    kith_server::service::users::create_user(server.state.store.as_ref(), server.workspace, "me@example.com", password)
        .await
        .unwrap();
    let mut browser = Browser::new(&server);
    browser.sign_in("me@example.com", password).await;
    let csrf = browser.get("/settings").await.csrf();
    let refused = browser.post("/settings/sender", &[("_csrf", &csrf), ("from_address", "nope")]).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.body.contains("is not an email address"), "{}", refused.body);
    let page = browser
        .post(
            "/settings/sender",
            &[("_csrf", &csrf), ("from_name", "Acme"), ("from_address", "Hello@Acme.example"), ("reply_to", "")],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains(r#"value="hello@acme.example""#), "{}", page.body);
    let sender = server.get("/api/workspace/sender").await;
    assert_eq!(sender, json!({"from_name": "Acme", "from_address": "hello@acme.example", "reply_to": null}));
    server.stop().await;
}

async fn a_frequency_cap_skips_and_quiet_hours_hold() {
    let smtp = SmtpSink::start().await;
    let server = server(&smtp).await;
    let tips = topic(&server, "Tips", false).await;
    let welcome = template(&server, tips).await;
    message_rule(&server, welcome).await;
    identify(&server, json!({"email": "ada@example.com", "first_name": "Ada"})).await;
    for bad in [
        json!({"cap": {"messages": 0, "within_hours": 24}}),
        json!({"cap": {"messages": 1, "within_hours": 0}}),
        json!({"quiet_hours": {"start": "25:00", "end": "08:00"}}),
        json!({"quiet_hours": {"start": "08:00", "end": "08:00"}}),
    ] {
        let (status, body) = server.call(Method::PUT, "/api/workspace/message-limits", &bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(body["code"].as_str().unwrap().starts_with("invalid_"), "{body}");
    }
    // At most one message a day; quiet from 08:30 to 10:00 in the workspace's zone (UTC), and the
    // test's clock stands at 09:00.
    let limits = json!({"cap": {"messages": 1, "within_hours": 24}, "quiet_hours": {"start": "08:30", "end": "10:00"}});
    let (status, body) = server.call(Method::PUT, "/api/workspace/message-limits", &limits).await;
    assert_eq!((status, &body), (StatusCode::OK, &limits));
    assert_eq!(server.get("/api/workspace/message-limits").await, limits);

    sign_up(&server, "q1").await;
    let report = server.run_jobs().await;
    assert_eq!((report.deliveries.held, report.deliveries.sent), (1, 0), "{report:?}");
    let pending = server.get("/api/deliveries?status=pending").await;
    let held = pending[0]["last_error"].as_str().unwrap();
    assert!(held.contains("quiet hours, until 2024-07-01T10:00:00Z"), "{held}");
    assert_eq!(pending[0]["next_attempt_at"], "2024-07-01T10:00:00Z");

    server.state.clock.advance(SignedDuration::from_hours(1));
    assert_eq!(server.run_jobs().await.deliveries.sent, 1, "sent when quiet hours end");
    sign_up(&server, "q2").await;
    assert_eq!(server.run_jobs().await.deliveries.skipped, 1, "over the cap");
    let log = messages(&server).await;
    assert_eq!(log["messages"][0]["reason"], "capped", "{log}");

    // Over a day after the last send the cap allows one again, once quiet hours are over; the
    // contact's own zone, once it has one, decides them.
    server.state.clock.advance(SignedDuration::from_hours(23));
    sign_up(&server, "q-quiet").await;
    assert_eq!(server.run_jobs().await.deliveries.held, 1, "09:00 UTC is quiet in the workspace's zone");
    server.state.clock.advance(SignedDuration::from_hours(2));
    assert_eq!(server.run_jobs().await.deliveries.sent, 1);
    // 09:00 UTC two days later: quiet in UTC, 18:00 in the contact's Tokyo.
    server.state.clock.advance(SignedDuration::from_hours(46));
    identify(&server, json!({"timezone": "Asia/Tokyo"})).await;
    sign_up(&server, "q3").await;
    assert_eq!(server.run_jobs().await.deliveries.sent, 1);
    assert_eq!(smtp.mails().len(), 3);
    server.stop().await;
}

backend_tests!(
    a_frequency_cap_skips_and_quiet_hours_hold,
    the_sender_is_set_on_the_settings_page,
    a_rule_sends_the_rendered_template_and_unsubscribing_stops_the_next,
    opt_in_topics_need_consent_which_traits_can_give_or_take,
    templates_are_checked_when_saved_and_previewed_for_a_real_contact,
);
