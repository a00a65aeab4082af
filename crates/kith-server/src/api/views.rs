//! The JSON shapes of the read API, with their OpenAPI schemas: how `api/` renders what the
//! service layer (`service/`) returns.

use std::collections::BTreeMap;

use jiff::Timestamp;
use kith_core::closeness::{days_of_millis, Model};
use kith_core::profile;
use kith_store::{Account, ApiKey, AudienceMembership, Contact, Identity, Interaction, Reprojection, User, Workspace};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::owners::UserRef;
use crate::service::contacts::{self, StreamEvent};
use crate::service::groups::mean_score;
use crate::service::history;

/// A contact's closeness at the moment of the answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClosenessView {
    /// 0–100.
    pub score: u8,
    /// `close`, `warm`, `cooling` or `cold`.
    pub bucket: String,
    /// The stored key `ln Σ w·exp(t/τ)`; sort by it for closeness at any moment.
    pub key: Option<f64>,
}

impl ClosenessView {
    /// The closeness of `key` at `now`.
    pub fn of(key: Option<f64>, model: &Model, now: Timestamp) -> Self {
        let closeness = model.closeness(key, days_of_millis(now.as_millisecond()));
        ClosenessView { score: closeness.score, bucket: closeness.bucket.as_str().to_owned(), key }
    }
}

/// A contact.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContactView {
    /// The contact's id, as in `/api/contacts/{id}`.
    pub id: i64,
    /// Normalised email.
    pub email: String,
    /// Display name.
    pub name: Option<String>,
    /// Profile fields read from traits (name, first_name, last_name, company, title, phone, avatar).
    pub profile: BTreeMap<String, String>,
    /// All traits.
    #[schema(value_type = Object)]
    pub traits: Value,
    /// Traits computed by Engage.
    pub computed_traits: Vec<String>,
    /// Closeness now.
    pub closeness: ClosenessView,
    /// The last moment the score was warm or better (≥ 40), if it ever was.
    pub warm_until: Option<String>,
    /// Earliest event time (RFC 3339).
    pub first_seen_at: String,
    /// Latest event time.
    pub last_seen_at: String,
    /// Latest interaction of any kind.
    pub last_interaction_at: Option<String>,
    /// Cadence set on the contact.
    pub cadence_days: Option<i64>,
    /// Cadence in force (own, or inherited from an audience or account rule).
    pub effective_cadence_days: Option<i64>,
    /// When the next touch is due.
    pub next_due_at: Option<String>,
    /// Whether it is due now.
    pub is_due: bool,
}

impl ContactView {
    /// The view of a contact at `now`.
    pub fn new(contact: Contact, model: &Model, now: Timestamp) -> Self {
        let profile =
            profile::profile(&contact.traits).into_iter().map(|(field, value)| (field.to_owned(), value)).collect();
        ContactView {
            id: contact.id,
            closeness: ClosenessView::of(contact.closeness_key, model, now),
            warm_until: contact.warm_until.map(|t| t.to_string()),
            profile,
            email: contact.email,
            name: contact.name,
            traits: Value::Object(contact.traits),
            computed_traits: contact.computed_traits,
            first_seen_at: contact.first_seen_at.to_string(),
            last_seen_at: contact.last_seen_at.to_string(),
            last_interaction_at: contact.last_interaction_at.map(|t| t.to_string()),
            cadence_days: contact.cadence_days,
            effective_cadence_days: contact.effective_cadence_days,
            is_due: contact.due_at.is_some_and(|due| due <= now),
            next_due_at: contact.due_at.map(|t| t.to_string()),
        }
    }
}

/// A page of contacts.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContactList {
    /// The contacts.
    pub items: Vec<ContactView>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

/// An id linked to a contact.
#[derive(Debug, Serialize, ToSchema)]
pub struct IdentityView {
    /// The id.
    pub value: String,
    /// `user_id`, `anonymous_id`, `alias` or `email` (a merged contact's email).
    pub kind: String,
    /// Linked at.
    pub linked_at: String,
}

impl From<Identity> for IdentityView {
    fn from(identity: Identity) -> Self {
        IdentityView { value: identity.value, kind: identity.kind, linked_at: identity.created_at.to_string() }
    }
}

/// An audience membership.
#[derive(Debug, Serialize, ToSchema)]
pub struct MembershipView {
    /// Audience key.
    pub audience: String,
    /// Member now.
    pub is_member: bool,
    /// Last entry or exit.
    pub changed_at: String,
}

impl From<AudienceMembership> for MembershipView {
    fn from(membership: AudienceMembership) -> Self {
        MembershipView {
            audience: membership.key,
            is_member: membership.is_member,
            changed_at: membership.changed_at.to_string(),
        }
    }
}

/// An account, briefly.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountView {
    /// The Segment groupId.
    pub group_id: String,
    /// The `name` trait, if any.
    pub name: Option<String>,
    /// The account's traits, merged from every group call.
    #[schema(value_type = Object)]
    pub traits: Value,
    /// How many contacts belong to the account.
    pub member_count: i64,
    /// The closest member's closeness.
    pub closeness: ClosenessView,
    /// The mean of the members' scores.
    pub mean_score: f64,
    /// The first group call (RFC 3339, UTC).
    pub created_at: String,
    /// Last group call.
    pub updated_at: String,
    /// The account's health now: `score` (0–100), `band` (`at_risk`, `needs_attention`,
    /// `healthy`) and each factor's contribution (`label`, `weight`, `value` 0–1, `points`,
    /// `max_points`, `detail`). Shown in account lists and pages, not in a contact's accounts.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub health: Option<kith_core::health::Health>,
}

impl AccountView {
    /// The view at `now`.
    pub fn new(account: Account, model: &Model, now: Timestamp) -> Self {
        AccountView {
            mean_score: mean_score(&account, model, now),
            closeness: ClosenessView::of(account.max_closeness_key, model, now),
            group_id: account.group_id,
            name: account.name,
            traits: Value::Object(account.traits),
            member_count: account.member_count,
            created_at: account.created_at.to_string(),
            updated_at: account.updated_at.to_string(),
            health: None,
        }
    }

    /// The view at `now` with the account's health.
    pub fn with_health(account: Account, health: kith_core::health::Health, model: &Model, now: Timestamp) -> Self {
        AccountView { health: Some(health), ..AccountView::new(account, model, now) }
    }
}

/// A contact with its identities, accounts and audiences.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContactDetail {
    /// The contact.
    #[serde(flatten)]
    pub contact: ContactView,
    /// Linked ids.
    pub identities: Vec<IdentityView>,
    /// The accounts the contact belongs to, by group calls.
    pub accounts: Vec<AccountView>,
    /// Audience memberships, current and past.
    pub audiences: Vec<MembershipView>,
    /// The user who owns the contact (`PUT /api/contacts/{id}/owner`).
    pub owner: Option<UserRef>,
}

impl ContactDetail {
    /// The view at `now`.
    pub fn new(detail: contacts::Detail, owner: Option<User>, model: &Model, now: Timestamp) -> Self {
        ContactDetail {
            contact: ContactView::new(detail.contact, model, now),
            identities: detail.identities.into_iter().map(Into::into).collect(),
            accounts: detail.accounts.into_iter().map(|a| AccountView::new(a, model, now)).collect(),
            audiences: detail.audiences.into_iter().map(Into::into).collect(),
            owner: owner.map(Into::into),
        }
    }
}

/// A timeline entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct InteractionView {
    /// The interaction's id.
    pub id: i64,
    /// `activity`, `note`, `email`, `call` or `meeting`.
    pub kind: String,
    /// The calendar day in the workspace's time zone (YYYY-MM-DD).
    pub day: String,
    /// The first event of the day (activity) or the time given.
    pub occurred_at: String,
    /// What happened.
    pub description: String,
    /// Events of that day merged into it.
    pub hits: i64,
}

impl From<Interaction> for InteractionView {
    fn from(interaction: Interaction) -> Self {
        InteractionView {
            id: interaction.id,
            kind: interaction.kind.as_str().to_owned(),
            day: kith_core::time::date_of_day_key(interaction.day).to_string(),
            occurred_at: interaction.occurred_at.to_string(),
            description: interaction.description,
            hits: interaction.hits,
        }
    }
}

/// A page of a timeline.
#[derive(Debug, Serialize, ToSchema)]
pub struct Timeline {
    /// Newest first.
    pub items: Vec<InteractionView>,
    /// Pass as `cursor` for the next page.
    pub next_cursor: Option<String>,
}

/// An event of a contact's stream.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    /// The event's id.
    pub id: i64,
    /// Segment call type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Event, page or screen name; group id; alias previousId.
    pub name: Option<String>,
    /// messageId.
    pub message_id: String,
    /// Event time.
    pub occurred_at: String,
    /// Receive time.
    pub received_at: String,
    /// The event's properties (track, page, screen) or traits (identify, group).
    #[schema(value_type = Object)]
    pub properties: Value,
    /// The contact's traits as they stood at the event's time.
    #[schema(value_type = Object)]
    pub traits: Value,
    /// The whole event as received.
    #[schema(value_type = Object)]
    pub payload: Value,
}

impl From<StreamEvent> for EventView {
    fn from(shown: StreamEvent) -> Self {
        let StreamEvent { event, properties, traits } = shown;
        EventView {
            id: event.id,
            event_type: event.event_type,
            name: event.name,
            message_id: event.message_id,
            occurred_at: event.occurred_at.to_string(),
            received_at: event.received_at.to_string(),
            properties,
            traits,
            payload: event.payload,
        }
    }
}

/// A page of events.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventList {
    /// Newest first.
    pub items: Vec<EventView>,
    /// Pass as `cursor` for the next page.
    pub next_cursor: Option<String>,
}

/// A rebuild of the workspace's history from its stored events.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReprojectionView {
    /// `none` (never rebuilt), `running` or `finished`.
    pub state: &'static str,
    /// Why it ran: `time zone changed` or `asked for`.
    pub reason: Option<String>,
    pub requested_at: Option<String>,
    pub finished_at: Option<String>,
    /// Contacts in the workspace when it was asked for.
    pub contacts_total: i64,
    /// Contacts rebuilt so far.
    pub contacts_done: i64,
    /// Events read so far.
    pub events_done: i64,
    /// 0–100.
    pub percent_done: u8,
}

impl ReprojectionView {
    pub fn of(reprojection: Option<Reprojection>) -> Self {
        let Some(reprojection) = reprojection else {
            return ReprojectionView {
                state: "none",
                reason: None,
                requested_at: None,
                finished_at: None,
                contacts_total: 0,
                contacts_done: 0,
                events_done: 0,
                percent_done: 0,
            };
        };
        ReprojectionView {
            state: if reprojection.running() { "running" } else { "finished" },
            percent_done: history::percent_done(&reprojection),
            reason: Some(reprojection.reason),
            requested_at: Some(reprojection.requested_at.to_string()),
            finished_at: reprojection.finished_at.map(|t| t.to_string()),
            contacts_total: reprojection.contacts_total,
            contacts_done: reprojection.contacts_done,
            events_done: reprojection.events_done,
        }
    }
}

/// Workspace settings.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkspaceView {
    /// The workspace's id.
    pub id: i64,
    /// A display name, shown in the web app.
    pub name: String,
    /// IANA time zone in which days are counted.
    pub time_zone: String,
    /// Closeness half-life in days.
    pub half_life_days: f64,
    /// Interaction weights.
    #[schema(value_type = Object)]
    pub weights: Value,
    /// Days an event of an unknown user waits for an identify.
    pub pending_days: i64,
    /// Whether ingest requires `X-Signature`.
    pub signing_secret_set: bool,
    /// Whether JSON-array bodies are refused while a signing secret is set (Segment signs only
    /// their first event).
    pub refuse_array_bodies: bool,
    /// The outbound Segment host.
    pub segment_host: Option<String>,
    /// Whether its write key is set.
    pub segment_write_key_set: bool,
    /// The daily digest's local time, "HH:MM".
    pub digest_time: Option<String>,
    /// Where the digest is posted.
    pub digest_webhook_url: Option<String>,
    /// Who the digest is emailed to.
    pub digest_email: Option<String>,
    /// The region whose nodes and database serve the workspace (e.g. `eu`); its keys carry it.
    /// `null` on a node that serves no region.
    pub region: Option<String>,
}

impl WorkspaceView {
    /// The view of `workspace`, whose region is its own or, made before regions, the node's.
    pub fn of(workspace: Workspace, regions: &crate::region::Regions) -> Self {
        WorkspaceView {
            region: regions.of_workspace(&workspace),
            weights: serde_json::to_value(workspace.weights).unwrap_or(Value::Null),
            id: workspace.id,
            name: workspace.name,
            time_zone: workspace.time_zone,
            half_life_days: workspace.half_life_days,
            pending_days: workspace.pending_days,
            signing_secret_set: workspace.signing_secret_set,
            refuse_array_bodies: workspace.refuse_array_bodies,
            segment_host: workspace.segment_host,
            segment_write_key_set: workspace.segment_write_key_set,
            digest_time: workspace.digest.time,
            digest_webhook_url: workspace.digest.webhook_url,
            digest_email: workspace.digest.email,
        }
    }
}

/// An API key as listed.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    /// The key's id, as in `DELETE /api/keys/{id}`.
    pub id: i64,
    /// `write` or `secret`.
    pub kind: String,
    /// A label chosen at creation, to tell keys apart.
    pub name: String,
    /// The key's first characters.
    pub prefix: String,
    /// When the key was created (RFC 3339, UTC).
    pub created_at: String,
    /// When the key was revoked; a revoked key is refused at once.
    pub revoked_at: Option<String>,
    /// The whole key: only in the answer that creates it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl From<ApiKey> for KeyView {
    fn from(key: ApiKey) -> Self {
        KeyView {
            id: key.id,
            kind: key.kind.as_str().to_owned(),
            name: key.name,
            prefix: key.prefix,
            created_at: key.created_at.to_string(),
            revoked_at: key.revoked_at.map(|t| t.to_string()),
            key: None,
        }
    }
}
