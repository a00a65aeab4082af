//! `/api/contacts`: list, search, filter and sort; one contact; its timeline and events;
//! manual interactions, cadence, merge and deletion.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use jiff::Timestamp;
use kith_core::closeness::{Bucket, InteractionKind};
use kith_store::{Contact, ContactQuery, ContactSort, NewInteraction, OwnerSubject, Workspace};
use serde::Deserialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::views::*;
use super::{workspace_of, Body};
use crate::auth::SecretKey;
use crate::error::{ApiError, ApiResult};
use crate::service::contacts::{self, find_contact};
use crate::service::{decode_cursor, encode_cursor, owners};
use crate::AppState;

/// Contact list parameters.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ListParams {
    /// Substring of the email, name or a trait value.
    pub search: Option<String>,
    /// `last_seen` (default), `closeness`, `closeness_asc` or `due`.
    pub sort: Option<String>,
    /// Only this bucket: `close`, `warm`, `cooling` or `cold`.
    pub bucket: Option<String>,
    /// Only members of this audience (key).
    pub audience: Option<String>,
    /// Only members of this account (groupId).
    pub account: Option<String>,
    /// Only contacts due now.
    pub due: Option<bool>,
    /// Only contacts of this owner: `me` (the user the `Kith-User` header names), `none`, or a
    /// user's email or id.
    pub owner: Option<String>,
    /// From a previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Page size, 1–1000 (default 50).
    pub limit: Option<usize>,
}

/// Lists contacts.
#[utoipa::path(get, path = "/api/contacts", tag = "contacts", params(ListParams),
    responses((status = 200, body = ContactList), (status = 400, body = crate::error::ErrorBody)),
    security(("secret_key" = [])))]
pub async fn list(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    headers: axum::http::HeaderMap,
    Query(params): Query<ListParams>,
) -> ApiResult<Json<ContactList>> {
    let workspace = workspace_of(&state, key.workspace_id).await?;
    let now = state.clock.now();
    let mut query = ContactQuery {
        search: params.search,
        sort: parse_sort(params.sort.as_deref())?,
        audience: params.audience,
        account: params.account,
        cursor: decode_cursor(params.cursor.as_deref())?,
        limit: params.limit.unwrap_or(50),
        ..ContactQuery::default()
    };
    if let Some(bucket) = params.bucket.as_deref() {
        let bucket = Bucket::parse(bucket).ok_or_else(|| {
            ApiError::bad_request("invalid_bucket", "bucket", "bucket must be close, warm, cooling or cold")
        })?;
        query.key_range = Some(contacts::bucket_range(bucket, &workspace.model(), now));
    }
    if params.due == Some(true) {
        query.due_before = Some(now);
    }
    query.owner = super::owners::owner_param(&state, workspace.id, &headers, params.owner.as_deref()).await?;
    list_page(&state, &workspace, query, now).await.map(Json)
}

fn parse_sort(sort: Option<&str>) -> ApiResult<ContactSort> {
    Ok(match sort.unwrap_or("last_seen") {
        "last_seen" => ContactSort::LastSeen,
        "closeness" => ContactSort::Closeness,
        "closeness_asc" => ContactSort::ClosenessAsc,
        "due" => ContactSort::Due,
        other => {
            return Err(ApiError::bad_request(
                "invalid_sort",
                "sort",
                format!("unknown sort {other:?}; use last_seen, closeness, closeness_asc or due"),
            ))
        }
    })
}

async fn list_page(
    state: &AppState,
    workspace: &Workspace,
    query: ContactQuery,
    now: Timestamp,
) -> ApiResult<ContactList> {
    let model = workspace.model();
    let page = state.store.contacts(workspace.id, query).await?;
    Ok(ContactList {
        items: page.items.into_iter().map(|c| ContactView::new(c, &model, now)).collect(),
        next_cursor: encode_cursor(page.next),
    })
}

/// Page parameters.
#[derive(Debug, Deserialize, IntoParams)]
pub struct PageParams {
    /// From a previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Page size (default 50).
    pub limit: Option<usize>,
}

/// Contacts that were close or warm in the last 90 days and are now cooling or cold, closest first.
#[utoipa::path(get, path = "/api/contacts/losing-touch", tag = "contacts", params(PageParams),
    responses((status = 200, body = ContactList)), security(("secret_key" = [])))]
pub async fn losing_touch(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    Query(params): Query<PageParams>,
) -> ApiResult<Json<ContactList>> {
    let workspace = workspace_of(&state, key.workspace_id).await?;
    let now = state.clock.now();
    let query = contacts::losing_touch(now, decode_cursor(params.cursor.as_deref())?, params.limit.unwrap_or(50));
    list_page(&state, &workspace, query, now).await.map(Json)
}

/// Contacts whose cadence says they are due a touch, most overdue first.
#[utoipa::path(get, path = "/api/contacts/due", tag = "contacts", params(PageParams),
    responses((status = 200, body = ContactList)), security(("secret_key" = [])))]
pub async fn due(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    Query(params): Query<PageParams>,
) -> ApiResult<Json<ContactList>> {
    let workspace = workspace_of(&state, key.workspace_id).await?;
    let now = state.clock.now();
    let query = contacts::due(now, decode_cursor(params.cursor.as_deref())?, params.limit.unwrap_or(50));
    list_page(&state, &workspace, query, now).await.map(Json)
}

/// One contact with its identities, accounts and audiences.
#[utoipa::path(get, path = "/api/contacts/{id}", tag = "contacts",
    params(("id" = String, Path, description = "Contact id or email")),
    responses((status = 200, body = ContactDetail), (status = 404, body = crate::error::ErrorBody)),
    security(("secret_key" = [])))]
pub async fn show(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    Path(id): Path<String>,
) -> ApiResult<Json<ContactDetail>> {
    let workspace = workspace_of(&state, key.workspace_id).await?;
    let contact = find_contact(&state, workspace.id, &id).await?;
    detail(&state, &workspace, contact).await.map(Json)
}

/// The JSON view of a contact with its identities, accounts and audiences.
async fn detail(state: &AppState, workspace: &Workspace, contact: Contact) -> ApiResult<ContactDetail> {
    let owner = owners::owner_of(state, workspace.id, OwnerSubject::Contact, contact.id).await?;
    let detail = contacts::detail(state, workspace.id, contact).await?;
    Ok(ContactDetail::new(detail, owner, &workspace.model(), state.clock.now()))
}

/// A contact's timeline, newest first.
#[utoipa::path(get, path = "/api/contacts/{id}/timeline", tag = "contacts",
    params(("id" = String, Path, description = "Contact id or email"), PageParams),
    responses((status = 200, body = Timeline), (status = 404, body = crate::error::ErrorBody)),
    security(("secret_key" = [])))]
pub async fn timeline(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    Path(id): Path<String>,
    Query(params): Query<PageParams>,
) -> ApiResult<Json<Timeline>> {
    let contact = find_contact(&state, key.workspace_id, &id).await?;
    let page = state
        .store
        .timeline(key.workspace_id, contact.id, decode_cursor(params.cursor.as_deref())?, params.limit.unwrap_or(50))
        .await?;
    Ok(Json(Timeline {
        items: page.items.into_iter().map(Into::into).collect(),
        next_cursor: encode_cursor(page.next),
    }))
}

/// A contact's event stream, newest first, each event with the traits in force at its time.
#[utoipa::path(get, path = "/api/contacts/{id}/events", tag = "contacts",
    params(("id" = String, Path, description = "Contact id or email"), PageParams),
    responses((status = 200, body = EventList), (status = 404, body = crate::error::ErrorBody)),
    security(("secret_key" = [])))]
pub async fn events(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    Path(id): Path<String>,
    Query(params): Query<PageParams>,
) -> ApiResult<Json<EventList>> {
    let contact = find_contact(&state, key.workspace_id, &id).await?;
    let cursor = decode_cursor(params.cursor.as_deref())?;
    let page = contacts::events(&state, key.workspace_id, contact.id, cursor, params.limit.unwrap_or(50)).await?;
    Ok(Json(EventList {
        items: page.items.into_iter().map(Into::into).collect(),
        next_cursor: encode_cursor(page.next),
    }))
}

/// A hand-written interaction.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewInteractionBody {
    /// `note`, `email`, `call` or `meeting`.
    pub kind: String,
    /// What happened.
    pub text: String,
    /// When (RFC 3339); now if absent.
    pub occurred_at: Option<String>,
}

/// Adds a note, email, call or meeting to a contact's timeline.
#[utoipa::path(post, path = "/api/contacts/{id}/interactions", tag = "contacts",
    params(("id" = String, Path, description = "Contact id or email")), request_body = NewInteractionBody,
    responses((status = 201, body = InteractionView), (status = 400, body = crate::error::ErrorBody)),
    security(("secret_key" = [])))]
pub async fn add_interaction(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    Path(id): Path<String>,
    Body(body): Body<NewInteractionBody>,
) -> ApiResult<(StatusCode, Json<InteractionView>)> {
    let kind = InteractionKind::parse(&body.kind)
        .filter(|kind| kind.is_manual())
        .ok_or_else(|| ApiError::bad_request("invalid_kind", "kind", "kind must be note, email, call or meeting"))?;
    let text = body.text.trim().to_owned();
    if text.is_empty() {
        return Err(ApiError::bad_request("missing_text", "text", "say what happened in `text`"));
    }
    let occurred_at = match body.occurred_at.as_deref() {
        None => state.clock.now(),
        Some(raw) => kith_core::time::parse_timestamp(raw).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_timestamp",
                "occurred_at",
                "occurred_at must be RFC 3339 with an offset, e.g. 2024-06-03T16:00:00Z",
            )
        })?,
    };
    let contact = find_contact(&state, key.workspace_id, &id).await?;
    let interaction =
        state.store.add_interaction(key.workspace_id, contact.id, NewInteraction { kind, occurred_at, text }).await?;
    Ok((StatusCode::CREATED, Json(interaction.into())))
}

/// Deletion options.
#[derive(Debug, Deserialize, IntoParams)]
pub struct DeleteParams {
    /// Also keep future events for this email out.
    pub suppress: Option<bool>,
}

/// Erases a contact and everything derived from it.
#[utoipa::path(delete, path = "/api/contacts/{id}", tag = "contacts",
    params(("id" = String, Path, description = "Contact id or email"), DeleteParams),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)), security(("secret_key" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    Path(id): Path<String>,
    Query(params): Query<DeleteParams>,
) -> ApiResult<StatusCode> {
    let contact = find_contact(&state, key.workspace_id, &id).await?;
    state.store.delete_contact(key.workspace_id, contact.id, params.suppress.unwrap_or(false)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The contact to merge in.
#[derive(Debug, Deserialize, ToSchema)]
pub struct MergeBody {
    /// Id or email of the contact that goes into the one in the path and disappears.
    pub contact: Value,
}

/// Merges another contact into this one: identities, traits (this one's win), timelines (still
/// one activity per day), events, accounts and audiences.
#[utoipa::path(post, path = "/api/contacts/{id}/merge", tag = "contacts",
    params(("id" = String, Path, description = "Contact id or email that remains")), request_body = MergeBody,
    responses((status = 200, body = ContactDetail), (status = 404, body = crate::error::ErrorBody),
              (status = 409, body = crate::error::ErrorBody)),
    security(("secret_key" = [])))]
pub async fn merge(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    Path(id): Path<String>,
    Body(body): Body<MergeBody>,
) -> ApiResult<Json<ContactDetail>> {
    let other = match &body.contact {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        _ => {
            return Err(ApiError::bad_request("invalid_contact", "contact", "`contact` is the id or email to merge in"))
        }
    };
    let workspace = workspace_of(&state, key.workspace_id).await?;
    let into = find_contact(&state, workspace.id, &id).await?;
    let from = find_contact(&state, workspace.id, &other).await?;
    let merged = state.store.merge_contacts(workspace.id, into.id, from.id).await?;
    detail(&state, &workspace, merged).await.map(Json)
}

/// A cadence.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CadenceBody {
    /// Every N days; `null` removes the contact's own cadence.
    pub days: Option<i64>,
}

/// Sets or clears a contact's own cadence.
#[utoipa::path(put, path = "/api/contacts/{id}/cadence", tag = "contacts",
    params(("id" = String, Path, description = "Contact id or email")), request_body = CadenceBody,
    responses((status = 200, body = ContactView), (status = 400, body = crate::error::ErrorBody)),
    security(("secret_key" = [])))]
pub async fn set_cadence(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
    Path(id): Path<String>,
    Body(body): Body<CadenceBody>,
) -> ApiResult<impl IntoResponse> {
    let days = contacts::check_cadence(body.days)?;
    let workspace = workspace_of(&state, key.workspace_id).await?;
    let contact = find_contact(&state, workspace.id, &id).await?;
    let contact = state.store.set_cadence(workspace.id, contact.id, days).await?;
    Ok(Json(ContactView::new(contact, &workspace.model(), state.clock.now())))
}

/// Every contact as CSV (closest first), streamed page by page so that a million contacts
/// never sit in memory at once.
#[utoipa::path(get, path = "/api/contacts/export.csv", tag = "contacts",
    responses((status = 200, content_type = "text/csv", description = "id, email, name, closeness, times, cadence, traits")),
    security(("secret_key" = [])))]
pub async fn export_csv(
    State(state): State<AppState>,
    SecretKey(key): SecretKey,
) -> ApiResult<axum::response::Response> {
    let workspace = workspace_of(&state, key.workspace_id).await?;
    let now = state.clock.now();
    let store = state.store.clone();
    // (cursor of the next page, first page?, finished?)
    let pages = futures_util::stream::unfold((None, true, false), move |(cursor, first, done)| {
        let store = store.clone();
        let workspace = workspace.clone();
        async move {
            if done {
                return None;
            }
            match crate::transfer::export_page(store.as_ref(), &workspace, now, cursor, first).await {
                Ok((bytes, next)) => {
                    let done = next.is_none();
                    Some((Ok::<_, std::io::Error>(axum::body::Bytes::from(bytes)), (next, false, done)))
                }
                Err(error) => {
                    tracing::error!(cause = %kith_store::error_chain(&error), "CSV export stopped");
                    Some((Err(std::io::Error::other(error)), (None, false, true)))
                }
            }
        }
    });
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (axum::http::header::CONTENT_DISPOSITION, "attachment; filename=\"contacts.csv\""),
        ],
        axum::body::Body::from_stream(pages),
    )
        .into_response())
}
