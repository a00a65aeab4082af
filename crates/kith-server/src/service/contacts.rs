//! Contacts: finding one, the losing-touch and due lists, a contact with what it belongs to,
//! its event stream with the traits in force at each event, and the bounds of a cadence.

use jiff::{SignedDuration, Timestamp};
use kith_core::closeness::{days_of_millis, Bucket, Model};
use kith_core::identity::normalize_email;
use kith_core::profile::merge_traits;
use kith_store::{
    Account, AudienceMembership, Contact, ContactId, ContactKey, ContactQuery, ContactSort, Cursor, Identity, Page,
    StoredEvent, WorkspaceId,
};
use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// Days in the window of "was close or warm" for losing touch: a contact that was close or warm
/// within it and is cooling or cold now is losing touch.
pub const LOSING_TOUCH_WINDOW_DAYS: i64 = 90;

/// The longest cadence accepted, in days (ten years).
pub const MAX_CADENCE_DAYS: i64 = 3650;

/// "Warm or better at some moment of the last 90 days, not now": the last moment a contact
/// was warm falls in `[now − 90 days, now)`.
pub fn losing_touch_window(now: Timestamp) -> (Timestamp, Timestamp) {
    (now - SignedDuration::from_hours(24 * LOSING_TOUCH_WINDOW_DAYS), now)
}

/// The key range of a bucket at `now`: `(min, max)` with `None` for no bound.
pub fn bucket_range(bucket: Bucket, model: &Model, now: Timestamp) -> (Option<f64>, Option<f64>) {
    let now_days = days_of_millis(now.as_millisecond());
    (
        model.key_for_score(bucket.min_score(), now_days),
        bucket.upper_score().and_then(|score| model.key_for_score(score, now_days)),
    )
}

/// Contacts losing touch, closest first.
pub fn losing_touch(now: Timestamp, cursor: Option<Cursor>, limit: usize) -> ContactQuery {
    ContactQuery {
        sort: ContactSort::Closeness,
        warm_until_range: Some(losing_touch_window(now)),
        cursor,
        limit,
        ..ContactQuery::default()
    }
}

/// Contacts due a touch, most overdue first.
pub fn due(now: Timestamp, cursor: Option<Cursor>, limit: usize) -> ContactQuery {
    ContactQuery { sort: ContactSort::Due, due_before: Some(now), cursor, limit, ..ContactQuery::default() }
}

/// Validates a cadence in days (`None` removes a contact's own).
pub fn check_cadence(days: Option<i64>) -> ApiResult<Option<i64>> {
    match days {
        Some(days) if !(1..=MAX_CADENCE_DAYS).contains(&days) => Err(ApiError::bad_request(
            "invalid_cadence",
            "days",
            format!("a cadence is a whole number of days from 1 to {MAX_CADENCE_DAYS}"),
        )),
        other => Ok(other),
    }
}

/// Reads `{id-or-email}` from a path.
pub fn contact_key(text: &str) -> ApiResult<ContactKey> {
    if let Ok(id) = text.parse::<i64>() {
        return Ok(ContactKey::Id(id));
    }
    normalize_email(text)
        .map(ContactKey::Email)
        .ok_or_else(|| ApiError::bad_request("invalid_contact", "id", "name a contact by its numeric id or its email"))
}

/// The contact named by `{id-or-email}`, or 404.
pub async fn find_contact(state: &AppState, workspace: WorkspaceId, text: &str) -> ApiResult<Contact> {
    state
        .store
        .contact(workspace, contact_key(text)?)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no contact {text} in this workspace")))
}

/// Contacts listed when a search for one matches several.
const PICK_SHOWN: usize = 5;

/// The one contact `text` names: its id or email, else the only contact whose email, name or a
/// trait contains it. A 400 on the field `contact` says when none or several match.
pub async fn pick_contact(state: &AppState, workspace: WorkspaceId, text: &str) -> ApiResult<Contact> {
    let text = text.trim();
    if text.is_empty() {
        return Err(ApiError::bad_request("invalid_contact", "contact", "type a contact's email or name"));
    }
    if let Ok(key) = contact_key(text) {
        if let Some(contact) = state.store.contact(workspace, key).await? {
            return Ok(contact);
        }
    }
    let query = ContactQuery { search: Some(text.to_owned()), limit: PICK_SHOWN + 1, ..ContactQuery::default() };
    let mut found = state.store.contacts(workspace, query).await?.items;
    match found.len() {
        0 => Err(ApiError::bad_request("invalid_contact", "contact", format!("no contact matches {text:?}"))),
        1 => Ok(found.remove(0)),
        _ => {
            let emails: Vec<&str> = found.iter().take(PICK_SHOWN).map(|contact| contact.email.as_str()).collect();
            let more = if found.len() > PICK_SHOWN { ", …" } else { "" };
            Err(ApiError::bad_request(
                "invalid_contact",
                "contact",
                format!("several contacts match {text:?} ({}{more}); type one's email", emails.join(", ")),
            ))
        }
    }
}

/// A contact with its linked ids, accounts and audience memberships.
pub struct Detail {
    /// The contact.
    pub contact: Contact,
    /// The ids linked to it.
    pub identities: Vec<Identity>,
    /// The accounts it belongs to.
    pub accounts: Vec<Account>,
    /// Its audience memberships, current and past.
    pub audiences: Vec<AudienceMembership>,
}

/// What the contact's page and `GET /api/contacts/{id}` show of it.
pub async fn detail(state: &AppState, workspace: WorkspaceId, contact: Contact) -> ApiResult<Detail> {
    let identities = state.store.identities(workspace, contact.id).await?;
    let accounts = state.store.contact_accounts(workspace, contact.id).await?;
    let audiences = state.store.contact_audiences(workspace, contact.id).await?;
    Ok(Detail { contact, identities, accounts, audiences })
}

/// An event of a contact's stream as shown.
pub struct StreamEvent {
    /// The event.
    pub event: StoredEvent,
    /// Its properties (track, page, screen) or traits (identify, group); an empty object if none.
    pub properties: Value,
    /// The contact's traits as they stood at the event's time.
    pub traits: Value,
}

/// A page of a contact's events, newest first, each with the traits the contact had then:
/// the identifies up to the page's newest event, merged in order up to each event's time.
pub async fn events(
    state: &AppState,
    workspace: WorkspaceId,
    contact: ContactId,
    cursor: Option<Cursor>,
    limit: usize,
) -> ApiResult<Page<StreamEvent>> {
    let page = state.store.events(workspace, contact, cursor, limit).await?;
    let newest = page.items.first().map_or(Timestamp::MIN, |event| event.occurred_at);
    let identifies = state.store.identify_payloads(workspace, contact, newest).await?;
    let history: Vec<(Timestamp, Map<String, Value>)> = identifies
        .iter()
        .filter_map(|payload| serde_json::from_str::<Value>(payload).ok())
        .map(|event| {
            let time = ["timestamp", "originalTimestamp"]
                .iter()
                .find_map(|field| event.get(*field).and_then(Value::as_str))
                .and_then(|text| text.parse().ok())
                .unwrap_or(Timestamp::MIN);
            let traits = event
                .get("traits")
                .or_else(|| event.get("context").and_then(|c| c.get("traits")))
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            (time, traits)
        })
        .collect();
    let items = page
        .items
        .into_iter()
        .map(|event| {
            let mut traits = Map::new();
            for (_, patch) in history.iter().filter(|(time, _)| *time <= event.occurred_at) {
                merge_traits(&mut traits, patch);
            }
            StreamEvent { properties: properties(&event), event, traits: Value::Object(traits) }
        })
        .collect();
    Ok(Page { items, next: page.next })
}

/// An event's properties, or its traits for an identify or group.
fn properties(event: &StoredEvent) -> Value {
    // An identify's traits are `traits`, else `context.traits` (as ingest reads them:
    // rudder-sdk-python sends them only there).
    let context_traits = || match event.event_type.as_str() {
        "identify" => event.payload.get("context").and_then(|context| context.get("traits")),
        _ => None,
    };
    [event.payload.get("properties"), event.payload.get("traits"), context_traits()]
        .into_iter()
        .flatten()
        .find(|value| value.is_object())
        .cloned()
        .unwrap_or_else(|| Value::Object(Default::default()))
}

/// Interactions read at most to draw a contact's closeness over time.
const HISTORY_INTERACTIONS: usize = 2000;

/// A contact's closeness score at `samples` moments `step_days` apart, the last at `now`,
/// oldest first: the closeness model applied to the interactions up to each moment.
pub async fn closeness_over_time(
    state: &AppState,
    workspace: &kith_store::Workspace,
    contact: ContactId,
    now: Timestamp,
    samples: i64,
    step_days: i64,
) -> Result<Vec<(Timestamp, u8)>, kith_store::StoreError> {
    let model = workspace.model();
    let mut times = Vec::new();
    let mut cursor = None;
    while times.len() < HISTORY_INTERACTIONS {
        let page = state.store.timeline(workspace.id, contact, cursor, 500).await?;
        for interaction in page.items.iter().filter(|interaction| interaction.kind.counts()) {
            times.push(kith_store::state::interaction_time(
                interaction.kind.as_str(),
                interaction.day,
                interaction.occurred_at.as_millisecond(),
            ));
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let mut points = Vec::new();
    for sample in (0..samples).rev() {
        let at = now - SignedDuration::from_hours(24 * step_days * sample);
        let at_days = days_of_millis(at.as_millisecond());
        // Only what had happened by then; the key is summed in log space as the store does.
        let key =
            times.iter().filter(|(_, t)| *t <= at_days).fold(None, |key, (kind, t)| Some(model.add(key, *kind, *t)));
        points.push((at, model.closeness(key, at_days).score));
    }
    Ok(points)
}
