//! The web app's messages pages over real HTTP: templates written, refused with line and
//! column next to the field, previewed for a contact found by name and test-sent to a local
//! SMTP server; topics, the frequency cap and quiet hours; a contact's messages and topics,
//! changed by someone of the team; rules built with a form, refused field by field, and the
//! message they send on an event.

mod common;

use common::browser::{Browser, Page};
use common::outbound::SmtpSink;
use common::{Options, TestServer};
use kith_server::jobs::delivery::SmtpConfig;
use kith_server::service::users::create_user;
use kith_server::web::WebConfig;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const PASSWORD: &str = "correct horse battery";
const PUBLIC_URL: &str = "https://kith.example.com";

async fn server(smtp: Option<&SmtpSink>) -> TestServer {
    let server = TestServer::start_with(Options {
        smtp: smtp.map(|smtp| SmtpConfig { url: smtp.url.clone(), from: "kith <kith@example.com>".into() }),
        web: WebConfig { public_url: Some(PUBLIC_URL.into()), ..WebConfig::default() },
        ..Options::default()
    })
    .await;
    create_user(server.state.store.as_ref(), server.workspace, "founder@example.com", PASSWORD).await.unwrap();
    server
}

async fn signed_in(server: &TestServer) -> Browser {
    let mut browser = Browser::new(server);
    browser.sign_in("founder@example.com", PASSWORD).await;
    browser
}

async fn created(server: &TestServer, path: &str, body: Value) -> Value {
    let (status, answer) = server.call(Method::POST, path, &body).await;
    assert_eq!(status, StatusCode::CREATED, "POST {path}: {answer}");
    answer
}

async fn topic(server: &TestServer, name: &str, opt_in: bool) -> i64 {
    created(server, "/api/topics", json!({"name": name, "opt_in": opt_in})).await["id"].as_i64().unwrap()
}

async fn add_ada(server: &TestServer) {
    server
        .ingest(
            "/v1/identify",
            &json!({"userId": "ada", "traits": {"email": "ada@example.com", "name": "Ada Lovelace", "first_name": "Ada"},
                    "timestamp": "2024-06-03T16:00:00Z"}),
        )
        .await;
}

/// Posts a form whose values are owned strings.
async fn submit(browser: &mut Browser, path: &str, fields: &[(&'static str, String)]) -> Page {
    let pairs: Vec<(&str, &str)> = fields.iter().map(|(key, value)| (*key, value.as_str())).collect();
    browser.post(path, &pairs).await
}

/// `fields` and more.
fn with(fields: &[(&'static str, String)], more: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let mut all = fields.to_vec();
    all.extend(more.iter().map(|(key, value)| (*key, (*value).to_owned())));
    all
}

/// The text of the element with this id (its first line of text, trimmed), if shown.
fn shown_error(page: &Page, field: &str) -> Option<String> {
    let marker = format!("id=\"err-{field}\"");
    let start = page.body.find(&marker)?;
    let tag_end = start + page.body[start..].find('>')?;
    if page.body[start..tag_end].contains("hidden") {
        return None;
    }
    let end = tag_end + page.body[tag_end..].find("</p>")?;
    Some(page.body[tag_end + 1..end].trim().to_owned())
}

async fn templates_are_written_checked_previewed_and_tested_in_the_app() {
    let smtp = SmtpSink::start().await;
    let server = server(Some(&smtp)).await;
    let tips = topic(&server, "Product tips", false).await;
    add_ada(&server).await;
    let mut browser = signed_in(&server).await;

    let list = browser.get("/messages").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.body.contains("No template yet"), "{}", list.body);
    assert!(list.body.contains(r#"href="/messages" aria-current="page""#), "Messages is in the navigation");
    let editor = browser.get("/messages/templates/new").await;
    assert_eq!(editor.status, StatusCode::OK);
    assert!(editor.body.contains("Product tips"), "the topics are offered");
    assert!(editor.headers["content-security-policy"].to_str().unwrap().contains("style-src 'self' 'unsafe-inline'"));
    let csrf = editor.csrf();
    let tips_id = tips.to_string();
    let draft = |html: &'static str| {
        vec![
            ("_csrf", csrf.clone()),
            ("name", "Welcome".to_owned()),
            ("topic_id", tips_id.clone()),
            ("subject", "Welcome, {{ contact.first_name }}".to_owned()),
            ("html", html.to_owned()),
            ("text", "Hi {{ contact.first_name }}. Leave: {{ unsubscribe_url }}".to_owned()),
        ]
    };
    // A syntax error: refused, shown with line and column next to the HTML body, the draft kept.
    let broken = "<p>Hi {{ contact.first_name }}</p>\n<p>{% if event.plan %}pro</p>";
    let page = submit(&mut browser, "/messages/templates", &draft(broken)).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
    let error = shown_error(&page, "html").expect("an error next to the HTML body");
    assert!(error.contains("line 2, column"), "{error}");
    assert!(shown_error(&page, "subject").is_none());
    assert!(page.body.contains(r#"id="t-html" name="html""#) && page.body.contains("{% if event.plan %}pro"));
    assert!(server.get("/api/templates").await.as_array().unwrap().is_empty(), "nothing saved");

    // No name: the error is next to the name.
    let mut unnamed = draft("<p>ok</p>");
    unnamed[1].1 = " ".into();
    let page = submit(&mut browser, "/messages/templates", &unnamed).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(shown_error(&page, "name").unwrap().contains("name"), "{}", page.body);

    // Preview of the broken draft: the error again, no preview.
    let page = submit(
        &mut browser,
        "/messages/templates",
        &with(&draft(broken), &[("intent", "preview"), ("contact", "Ada")]),
    )
    .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(shown_error(&page, "html").unwrap().contains("line 2"));

    // Fixed: saved, then shown in the list.
    let fixed = "<p style=\"color:#333\">Hi {{ contact.first_name }}</p>\n<a href=\"{{ unsubscribe_url }}\">Leave</a>";
    let page = submit(&mut browser, "/messages/templates", &draft(fixed)).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let location = page.location().unwrap().to_owned();
    assert!(location.starts_with("/messages/templates/") && location.ends_with("?saved=1"), "{location}");
    let id = server.get("/api/templates").await[0]["id"].as_i64().unwrap();
    let page = browser.get(&location).await;
    assert!(page.body.contains("Saved."), "{}", page.body);
    assert!(page.body.contains("Welcome, {{ contact.first_name }}"), "the editor is filled");
    let list = browser.get("/messages").await;
    assert!(list.body.contains(&format!("href=\"/messages/templates/{id}\"")), "{}", list.body);

    // Preview for a contact found by name: rendered, the HTML in a sandboxed frame.
    let path = format!("/messages/templates/{id}");
    let page =
        submit(&mut browser, &path, &with(&draft(fixed), &[("intent", "preview"), ("contact", "lovelace")])).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains(r#"id="preview-subject">Welcome, Ada<"#), "{}", page.body);
    assert!(
        page.body.contains(r#"sandbox="""#)
            && page.body.contains("srcdoc=\"&lt;p style=&quot;color:#333&quot;&gt;Hi Ada")
    );
    assert!(page.body.contains(&format!("{PUBLIC_URL}/unsubscribe/")), "the contact's real link");
    // Nobody by that name, or several: said next to the contact field.
    let page =
        submit(&mut browser, &path, &with(&draft(fixed), &[("intent", "preview"), ("contact", "nobody-here")])).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(shown_error(&page, "contact").unwrap().starts_with("No contact matches"));
    server
        .ingest(
            "/v1/identify",
            &json!({"userId": "ada2", "traits": {"email": "ada.b@example.com", "name": "Ada Byron"},
                                          "timestamp": "2024-06-03T16:00:00Z"}),
        )
        .await;
    let page = submit(&mut browser, &path, &with(&draft(fixed), &[("intent", "preview"), ("contact", "Ada")])).await;
    assert!(shown_error(&page, "contact").unwrap().starts_with("Several contacts match"), "{}", page.body);

    // A test send: to the typed address, marked as a test, with a link that unsubscribes nobody.
    let page = submit(
        &mut browser,
        &path,
        &with(&draft(fixed), &[("intent", "test"), ("contact", "ada@example.com"), ("test_to", "nope")]),
    )
    .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(shown_error(&page, "test_to").unwrap().contains("not an email address"));
    assert!(smtp.mails().is_empty());
    let page = submit(
        &mut browser,
        &path,
        &with(&draft(fixed), &[("intent", "test"), ("contact", "ada@example.com"), ("test_to", "me@acme.example")]),
    )
    .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("A test went to me@acme.example"), "{}", page.body);
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1);
    assert!(mails[0].to[0].contains("me@acme.example"));
    assert!(mails[0].data.contains("Subject: [Test] Welcome, Ada"), "{}", mails[0].data);
    assert!(mails[0].data.contains("/test>"), "{}", mails[0].data);
    assert!(server.get("/api/contacts/ada@example.com/messages").await["messages"].as_array().unwrap().is_empty());

    // Delete.
    let page = browser.get("/messages").await;
    let deleted = browser.post(&format!("/messages/templates/{id}/delete"), &[("_csrf", &page.csrf())]).await;
    assert_eq!(deleted.location(), Some("/messages#templates"));
    assert!(server.get("/api/templates").await.as_array().unwrap().is_empty());
    assert_eq!(browser.get(&format!("/messages/templates/{id}")).await.status, StatusCode::NOT_FOUND);
    server.stop().await;
}

async fn a_test_without_smtp_says_why() {
    let server = server(None).await;
    let tips = topic(&server, "Tips", false).await;
    add_ada(&server).await;
    let mut browser = signed_in(&server).await;
    let page = browser.get("/messages/templates/new").await;
    let tips = tips.to_string();
    let page = browser
        .post(
            "/messages/templates",
            &[
                ("_csrf", &page.csrf()),
                ("name", "T"),
                ("topic_id", &tips),
                ("subject", "S"),
                ("html", "<p>x</p>"),
                ("text", "x"),
                ("contact", "ada@example.com"),
                ("test_to", "me@acme.example"),
                ("intent", "test"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("The test could not be sent: no SMTP server is configured"), "{}", page.body);
    server.stop().await;
}

async fn topics_and_limits_are_managed_in_the_app() {
    let server = server(None).await;
    let mut browser = signed_in(&server).await;
    let page = browser.get("/messages").await;
    let csrf = page.csrf();

    let page = browser.post("/messages/topics", &[("_csrf", &csrf), ("name", " "), ("consent", "opt_out")]).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("A topic needs a name of 1 to 100 characters"), "{}", page.body);
    let page = browser.post("/messages/topics", &[("_csrf", &csrf), ("name", "Billing"), ("consent", "opt_in")]).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("The topic “Billing” is created."), "{}", page.body);
    let page = browser.post("/messages/topics", &[("_csrf", &csrf), ("name", "Tips"), ("consent", "opt_out")]).await;
    assert_eq!(page.status, StatusCode::OK);
    let page = browser.post("/messages/topics", &[("_csrf", &csrf), ("name", "Tips"), ("consent", "opt_out")]).await;
    assert_eq!(page.status, StatusCode::CONFLICT, "a name taken is said so");
    assert!(page.body.contains("already has a topic named"), "{}", page.body);
    let topics = server.get("/api/topics").await;
    assert_eq!(topics[0]["name"], "Billing");
    assert_eq!(topics[0]["opt_in"], true);
    assert_eq!(topics[1]["opt_in"], false);
    let (billing, tips) = (topics[0]["id"].as_i64().unwrap(), topics[1]["id"].as_i64().unwrap());

    // Rename and change the default; a name another topic has is refused.
    let path = format!("/messages/topics/{tips}");
    let page = browser.post(&path, &[("_csrf", &csrf), ("name", "Billing"), ("consent", "opt_out")]).await;
    assert_eq!(page.status, StatusCode::CONFLICT);
    let page = browser.post(&path, &[("_csrf", &csrf), ("name", "Product tips"), ("consent", "opt_in")]).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(
        server.get("/api/topics").await[1],
        json!({"id": tips, "name": "Product tips", "opt_in": true,
        "created_at": topics[1]["created_at"]})
    );
    assert_eq!(browser.post("/messages/topics/999/delete", &[("_csrf", &csrf)]).await.status, StatusCode::NOT_FOUND);

    // A topic a template uses stays until the template moves.
    created(
        &server,
        "/api/templates",
        json!({"name": "Invoice", "topic_id": billing, "subject": "s", "html": "h", "text": "t"}),
    )
    .await;
    let page = browser.post(&format!("/messages/topics/{billing}/delete"), &[("_csrf", &csrf)]).await;
    assert_eq!(page.status, StatusCode::CONFLICT);
    assert!(page.body.contains("Templates use this topic (Invoice)"), "{}", page.body);
    let page = browser.post(&format!("/messages/topics/{tips}/delete"), &[("_csrf", &csrf)]).await;
    assert_eq!(page.status, StatusCode::OK);
    let names: Vec<Value> =
        server.get("/api/topics").await.as_array().unwrap().iter().map(|t| t["name"].clone()).collect();
    assert_eq!(names, vec![json!("Billing")]);

    // The frequency cap and quiet hours, in Settings.
    let page = browser.get("/settings").await;
    assert!(page.body.contains("Frequency cap and quiet hours"));
    let limits = |count: &'static str, hours: &'static str, start: &'static str, end: &'static str| {
        [
            ("_csrf", csrf.clone()),
            ("cap_count", count.into()),
            ("cap_window_hours", hours.into()),
            ("quiet_start", start.into()),
            ("quiet_end", end.into()),
        ]
    };
    let page = submit(&mut browser, "/settings/limits", &limits("3", "", "", "")).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("A cap is"), "{}", page.body);
    assert!(page.body.contains(r#"value="3" aria-invalid="true""#), "the cap is marked and kept: {}", page.body);
    let page = submit(&mut browser, "/settings/limits", &limits("three", "24", "", "")).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    let page = submit(&mut browser, "/settings/limits", &limits("3", "24", "21:00", "21:00")).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("Quiet hours are"), "{}", page.body);
    let page = submit(&mut browser, "/settings/limits", &limits("3", "24", "21:00", "08:00")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(
        server.get("/api/workspace/message-limits").await,
        json!({"cap": {"messages": 3, "within_hours": 24}, "quiet_hours": {"start": "21:00", "end": "08:00"}})
    );
    let page = browser.get("/settings").await;
    assert!(page.body.contains(r#"name="quiet_start" value="21:00""#), "the form shows what is set");
    let page = submit(&mut browser, "/settings/limits", &limits("", "", "", "")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(server.get("/api/workspace/message-limits").await, json!({"cap": null, "quiet_hours": null}));
    server.stop().await;
}

async fn a_contacts_messages_and_topics_show_and_change_on_its_page() {
    let server = server(None).await;
    let tips = topic(&server, "Product tips", false).await;
    let news = topic(&server, "Newsletter", true).await;
    add_ada(&server).await;
    let ada = server.contact("ada@example.com").await["id"].as_i64().unwrap();
    let mut browser = signed_in(&server).await;
    let page = browser.get(&format!("/contacts/{ada}")).await;
    assert!(page.body.contains("No message considered yet."), "{}", page.body);
    assert!(page.body.contains("aria-label=\"Unsubscribe from Product tips\""), "opt-out: subscribed");
    assert!(page.body.contains("aria-label=\"Subscribe to Newsletter\""), "opt-in: no yes yet");
    let csrf = page.csrf();
    let path = format!("/contacts/{ada}/subscriptions");
    let (tips, news) = (tips.to_string(), news.to_string());
    let page = browser.post(&path, &[("_csrf", &csrf), ("topic_id", &news), ("subscribed", "1")]).await;
    assert_eq!(page.location(), Some(format!("/contacts/{ada}#messages").as_str()));
    let page = browser.post(&path, &[("_csrf", &csrf), ("topic_id", &tips), ("subscribed", "0")]).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let preferences = server.get("/api/contacts/ada@example.com/messages").await["preferences"].clone();
    assert_eq!(preferences[0]["subscribed"], false, "{preferences}");
    assert_eq!(preferences[1]["subscribed"], true, "{preferences}");
    let page = browser.get(&format!("/contacts/{ada}")).await;
    assert!(page.body.contains("aria-label=\"Subscribe to Product tips\""), "{}", page.body);
    assert!(page.body.contains("Unsubscribed (preferences page, link, or by hand)."));
    // Bad input is said on the page, an unknown topic is a 404.
    let page = browser.post(&path, &[("_csrf", &csrf), ("topic_id", "x"), ("subscribed", "1")]).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("Choose a topic, and subscribe or unsubscribe"));
    let page = browser.post(&path, &[("_csrf", &csrf), ("topic_id", "999"), ("subscribed", "1")]).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    server.stop().await;
}

async fn rules_are_built_with_a_form_and_send_the_template_on_an_event() {
    let smtp = SmtpSink::start().await;
    let server = server(Some(&smtp)).await;
    let tips = topic(&server, "Product tips", false).await;
    let template = created(
        &server,
        "/api/templates",
        json!({"name": "Welcome", "topic_id": tips, "subject": "Welcome, {{ contact.first_name }}",
               "html": "<p>Your {{ event.plan }} plan</p>", "text": "Your {{ event.plan }} plan"}),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    add_ada(&server).await;
    let mut browser = signed_in(&server).await;
    let page = browser.get("/nudges/rules/new").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains(r#"<option value="event" selected>does an event</option>"#), "{}", page.body);
    let csrf = page.csrf();
    let template_id = template.to_string();
    let form = |name: &'static str, event: &'static str, within: &'static str, to: &'static str| {
        vec![
            ("_csrf", csrf.clone()),
            ("name", name.to_owned()),
            ("enabled", "1".to_owned()),
            ("when", "event".to_owned()),
            ("event_name", event.to_owned()),
            ("cond_key_0", "plan".to_owned()),
            ("cond_value_0", "[\"pro\", \"team\"]".to_owned()),
            ("cond_key_1", "".to_owned()),
            ("cond_value_1", "".to_owned()),
            ("unless_event", "".to_owned()),
            ("unless_within", within.to_owned()),
            ("unless_unit", "days".to_owned()),
            ("act_message", "1".to_owned()),
            ("message_template", template_id.clone()),
            ("act_email", "1".to_owned()),
            ("email_to", to.to_owned()),
            ("webhook_url", "".to_owned()),
        ]
    };

    // Each refusal next to its field; what was typed stays.
    let page = submit(&mut browser, "/nudges/rules", &form("", "", "5", "not-an-email")).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains(r#"id="err-name""#) && page.body.contains("A rule needs a name"), "{}", page.body);
    assert!(page.body.contains(r#"id="err-event_name""#), "{}", page.body);
    assert!(page.body.contains(r#"id="err-unless_event""#), "a delay without its event");
    assert!(page.body.contains(r#"id="err-email_to""#) && page.body.contains("is not an email address"));
    assert!(page.body.contains(r#"value="not-an-email""#), "the draft is kept");
    let mut nothing = form("x", "Signed Up", "", "a@b.example");
    nothing.retain(|(key, _)| !key.starts_with("act_"));
    let page = submit(&mut browser, "/nudges/rules", &nothing).await;
    assert!(page.body.contains(r#"id="err-actions""#), "{}", page.body);
    let mut internal = form("x", "Signed Up", "", "a@b.example");
    internal.push(("act_webhook", "1".into()));
    internal.retain(|(key, _)| *key != "webhook_url");
    internal.push(("webhook_url", "http://169.254.169.254/".into()));
    let page = submit(&mut browser, "/nudges/rules", &internal).await;
    assert!(page.body.contains(r#"id="err-webhook_url""#) && page.body.contains("outbound_allow"), "{}", page.body);
    assert!(server.get("/api/rules").await.as_array().unwrap().is_empty(), "nothing saved");

    // A good one: the rule the API shows is the one the form says.
    let page = submit(&mut browser, "/nudges/rules", &form("Welcome pro", "Signed Up", "", "team@acme.example")).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let rules = server.get("/api/rules").await;
    let id = rules[0]["id"].as_i64().unwrap();
    assert_eq!(rules[0]["when"], json!({"event": {"name": "Signed Up", "where": {"plan": ["pro", "team"]}}}));
    assert_eq!(rules[0]["then"], json!([{"message": {"template": template}}, {"email": {"to": "team@acme.example"}}]));
    assert!(rules[0].get("unless").is_none_or(Value::is_null), "{}", rules[0]);
    let page = browser.get("/nudges").await;
    assert!(page.body.contains("send “Welcome” to the contact, email team@acme.example."), "{}", page.body);

    // Editing fills the form; saving it with an inaction delay changes the rule.
    let page = browser.get(&format!("/nudges/rules/{id}")).await;
    assert!(
        page.body.contains(r#"value="Welcome pro""#) && page.body.contains(r#"value="pro, team""#),
        "{}",
        page.body
    );
    assert!(page.body.contains(r#"name="act_message" value="1" checked"#), "{}", page.body);
    let mut later = form("Welcome pro", "Signed Up", "2", "team@acme.example");
    later.retain(|(key, _)| *key != "unless_event" && *key != "act_email");
    later.push(("unless_event", "Invited Teammate".into()));
    let page = submit(&mut browser, &format!("/nudges/rules/{id}"), &later).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let rule = server.get(&format!("/api/rules/{id}")).await;
    assert_eq!(rule["unless"], json!({"event": "Invited Teammate", "within_hours": 48}));
    assert_eq!(rule["then"], json!([{"message": {"template": template}}]));
    // The JSON stays: saving it through the advanced form.
    let json_rule =
        r#"{"name": "Welcome pro", "when": {"event": {"name": "Signed Up", "where": {"plan": ["pro", "team"]}}},
        "then": [{"message": {"template": TEMPLATE}}]}"#
            .replace("TEMPLATE", &template.to_string());
    let page = browser.post(&format!("/nudges/rules/{id}"), &[("_csrf", &csrf), ("rule", &json_rule)]).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert!(server.get(&format!("/api/rules/{id}")).await.get("unless").is_none_or(Value::is_null));
    let page = browser.post(&format!("/nudges/rules/{id}"), &[("_csrf", &csrf), ("rule", "{nope")]).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(
        page.body.contains("{nope") && page.body.contains("<details class=\"card\" id=\"advanced\" open>"),
        "{}",
        page.body
    );

    // The event: the message goes out and is listed on the contact's page.
    server
        .ingest(
            "/v1/track",
            &json!({"userId": "ada", "event": "Signed Up", "properties": {"plan": "pro"}, "timestamp": server.state.clock.now().to_string()}),
        )
        .await;
    server.run_jobs().await;
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert!(mails[0].data.contains("Subject: Welcome, Ada"), "{}", mails[0].data);
    let ada = server.contact("ada@example.com").await["id"].as_i64().unwrap();
    let page = browser.get(&format!("/contacts/{ada}")).await;
    let log = &page.body[page.body.find("message-log").expect("the message log")..];
    assert!(log.contains(&format!(r#"<a href="/messages/templates/{template}">Welcome</a>"#)), "{log}");
    assert!(log.contains("Rule: Welcome pro") && log.contains(">sent<"), "{log}");
    server.stop().await;
}

crate::backend_tests!(
    templates_are_written_checked_previewed_and_tested_in_the_app,
    a_test_without_smtp_says_why,
    topics_and_limits_are_managed_in_the_app,
    a_contacts_messages_and_topics_show_and_change_on_its_page,
    rules_are_built_with_a_form_and_send_the_template_on_an_event,
);
