//! The unsubscribe link of every message, which works without signing in: the link's HMAC
//! signature (`service/messages.rs`) names the workspace, contact and topic it may change.
//!
//! `GET` shows the contact's preferences (every topic, with a checkbox); `POST` with the form's
//! `save` field stores them; any other `POST` is RFC 8058's one-click unsubscribe, which mail
//! clients send with the body `List-Unsubscribe=One-Click` (urlencoded or multipart), and
//! unsubscribes from the link's topic.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use kith_store::{Contact, ContactKey, StoreError, WorkspaceId};
use maud::html;

use super::layout::{bare_page, error_page};
use crate::service::messages;
use crate::AppState;

/// What a link names.
type LinkPath = (WorkspaceId, i64, i64, String);

/// The contact a valid link names; `None` for a link kith did not sign (or whose contact is gone).
async fn contact_of(
    state: &AppState,
    (workspace, contact, topic, signature): &LinkPath,
) -> Result<Option<Contact>, StoreError> {
    let Some(key) = messages::link_key(state, *workspace).await? else { return Ok(None) };
    if !messages::link_is_valid(&key, *workspace, *contact, *topic, signature) {
        return Ok(None);
    }
    state.store.contact(*workspace, ContactKey::Id(*contact)).await
}

fn invalid_link() -> Response {
    (StatusCode::NOT_FOUND, error_page(StatusCode::NOT_FOUND, "this unsubscribe link is not valid")).into_response()
}

fn failed(error: StoreError) -> Response {
    tracing::error!(cause = %kith_store::error_chain(&error), "unsubscribe page failed");
    let status = StatusCode::SERVICE_UNAVAILABLE;
    (status, error_page(status, "kith could not reach its database; try again in a moment")).into_response()
}

/// `GET /unsubscribe/{workspace}/{contact}/{topic}/{signature}`: the preferences page.
pub async fn page(State(state): State<AppState>, Path(link): Path<LinkPath>) -> Response {
    match contact_of(&state, &link).await {
        Ok(Some(contact)) => preferences_page(&state, &link, &contact, None).await,
        Ok(None) => invalid_link(),
        Err(error) => failed(error),
    }
}

/// `POST` to the same link: one-click unsubscribe, or the preferences form.
pub async fn post(State(state): State<AppState>, Path(link): Path<LinkPath>, body: Bytes) -> Response {
    let contact = match contact_of(&state, &link).await {
        Ok(Some(contact)) => contact,
        Ok(None) => return invalid_link(),
        Err(error) => return failed(error),
    };
    let (workspace, _, topic, _) = link;
    let now = state.clock.now();
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let result = if fields.iter().any(|(name, _)| name == "save") {
        save_preferences(&state, workspace, &contact, &fields, now).await
    } else {
        unsubscribe(&state, workspace, contact.id, topic, now).await
    };
    match result {
        Ok(()) => preferences_page(&state, &link, &contact, Some("Your preferences are saved.")).await,
        Err(error) => failed(error),
    }
}

/// Unsubscribes the contact from a topic; the message that led there is told (stats, Segment).
async fn unsubscribe(
    state: &AppState,
    workspace: WorkspaceId,
    contact: i64,
    topic: i64,
    now: jiff::Timestamp,
) -> Result<(), StoreError> {
    state.store.set_subscription(workspace, contact, topic, false, now).await?;
    messages::unsubscribed(state, workspace, contact, topic, now).await
}

/// Stores a choice for every topic: checked boxes (`topic-<id>`) subscribe, the others not. A
/// topic whose messages reached the contact and now will not is an unsubscribe.
async fn save_preferences(
    state: &AppState,
    workspace: WorkspaceId,
    contact: &Contact,
    fields: &[(String, String)],
    now: jiff::Timestamp,
) -> Result<(), StoreError> {
    for (topic, allowed) in messages::preferences(state, workspace, contact).await? {
        let name = format!("topic-{}", topic.id);
        let checked = fields.iter().any(|(field, _)| *field == name);
        if allowed && !checked {
            unsubscribe(state, workspace, contact.id, topic.id, now).await?;
        } else {
            state.store.set_subscription(workspace, contact.id, topic.id, checked, now).await?;
        }
    }
    Ok(())
}

async fn preferences_page(state: &AppState, link: &LinkPath, contact: &Contact, notice: Option<&str>) -> Response {
    let (workspace, contact_id, topic, signature) = link;
    // The contact's traits are re-read so that the page shows what the next message would obey.
    let contact = match state.store.contact(*workspace, ContactKey::Id(*contact_id)).await {
        Ok(Some(fresh)) => fresh,
        Ok(None) => contact.clone(),
        Err(error) => return failed(error),
    };
    let preferences = match messages::preferences(state, *workspace, &contact).await {
        Ok(preferences) => preferences,
        Err(error) => return failed(error),
    };
    let action = format!("/unsubscribe/{workspace}/{contact_id}/{topic}/{signature}");
    let body = html! {
        main.auth id="main" {
            div.auth-card {
                h1 { "Email preferences" }
                p { "For " (contact.email) "." }
                @if let Some(notice) = notice { p role="status" { (notice) } }
                form method="post" action=(action) {
                    input type="hidden" name="save" value="1";
                    @for (topic, subscribed) in &preferences {
                        p {
                            label {
                                input type="checkbox" name=(format!("topic-{}", topic.id)) checked[*subscribed];
                                " " (topic.name)
                            }
                        }
                    }
                    button.button.button-primary type="submit" { "Save" }
                }
            }
        }
    };
    Html(bare_page("Email preferences", body).into_string()).into_response()
}
