//! The records the store reads and writes, shared by every backend and by the HTTP layer.

use jiff::{tz::TimeZone, Timestamp};
use kith_core::closeness::{self, Model, Weights};
use kith_core::{Event, Rejection};
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

/// A workspace's id.
pub type WorkspaceId = i64;
/// A contact's id.
pub type ContactId = i64;

/// A workspace and its settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Workspace {
    pub id: WorkspaceId,
    /// Display name.
    pub name: String,
    /// IANA time zone in which days are counted.
    pub time_zone: String,
    /// Closeness half-life in days.
    pub half_life_days: f64,
    /// Interaction weights.
    pub weights: Weights,
    /// Days an event for an unknown user is kept waiting for an identify.
    pub pending_days: i64,
    /// Whether ingest requests must carry `X-Signature` (the secret itself is never shown).
    pub signing_secret_set: bool,
    /// The Segment-compatible host kith sends its own track calls to.
    pub segment_host: Option<String>,
    /// Whether a write key for that host is set (the key itself is never shown).
    pub segment_write_key_set: bool,
    /// The daily digest, if configured.
    pub digest: Digest,
    /// With a signing secret set, JSON-array bodies are refused: Segment signs only their
    /// first event, so the others could have been added to a captured request.
    pub refuse_array_bodies: bool,
    /// The region whose node and database serve it (e.g. `eu`), set when it is created;
    /// `None` for a workspace made before regions, which is served wherever its database is.
    pub region: Option<String>,
    pub created_at: Timestamp,
}

/// The daily digest of due and losing-touch contacts, sent once a day at the workspace's chosen
/// time.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Digest {
    /// "HH:MM" in the workspace's time zone; `None`: no digest.
    pub time: Option<String>,
    /// A webhook to post it to.
    pub webhook_url: Option<String>,
    /// An address to email it to.
    pub email: Option<String>,
}

impl Workspace {
    /// Whether kith sends its own track calls to a Segment host.
    pub fn sends_to_segment(&self) -> bool {
        self.segment_host.is_some() && self.segment_write_key_set
    }
}

impl Workspace {
    /// The closeness model of this workspace.
    pub fn model(&self) -> Model {
        Model { half_life_days: self.half_life_days, weights: self.weights }
    }

    /// Whether going from `self` to `after` changes how stored events are counted into days, so
    /// the history must be rebuilt from them.
    pub fn needs_reprojection(&self, after: &Workspace) -> bool {
        self.time_zone != after.time_zone
    }

    /// The workspace's time zone; UTC if the stored name is no longer known.
    pub fn tz(&self) -> TimeZone {
        kith_core::time::time_zone(&self.time_zone).unwrap_or(TimeZone::UTC)
    }

    /// The receive time (ms) before which this workspace's pending events have waited too long.
    pub(crate) fn pending_cutoff(&self, now_ms: i64) -> i64 {
        now_ms - self.pending_days * MS_PER_DAY
    }
}

/// Milliseconds in a day (times are stored in milliseconds).
const MS_PER_DAY: i64 = 86_400_000;

/// A change to workspace settings; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct WorkspacePatch {
    /// New name.
    pub name: Option<String>,
    /// New IANA time zone (validated by the caller).
    pub time_zone: Option<String>,
    /// New half-life in days: every closeness key is recomputed.
    pub half_life_days: Option<f64>,
    /// New weights: every closeness key is recomputed.
    pub weights: Option<Weights>,
    /// New pending retention in days.
    pub pending_days: Option<i64>,
    /// `Some(None)` removes the signing secret, `Some(Some(s))` sets it.
    pub signing_secret: Option<Option<String>>,
    /// Outbound Segment host (`Some(None)` removes it).
    pub segment_host: Option<Option<String>>,
    /// Outbound Segment write key (`Some(None)` removes it).
    pub segment_write_key: Option<Option<String>>,
    /// Digest time "HH:MM" (`Some(None)` turns the digest off).
    pub digest_time: Option<Option<String>>,
    /// Digest webhook.
    pub digest_webhook_url: Option<Option<String>>,
    /// Digest email recipient.
    pub digest_email: Option<Option<String>>,
    /// Whether to refuse JSON-array bodies while a signing secret is set.
    pub refuse_array_bodies: Option<bool>,
    /// The workspace's region, given once when it is created (the HTTP layer never changes it:
    /// its keys carry the region they were made in).
    pub region: Option<String>,
}

/// The two kinds of API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    /// `kith_wk_…`: ingest only, safe in a web page.
    Write,
    /// `kith_sk_…`: ingest and the read/admin API.
    Secret,
}

impl KeyKind {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Write => "write",
            KeyKind::Secret => "secret",
        }
    }

    /// Parses a stored or user-given name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "write" => Some(KeyKind::Write),
            "secret" => Some(KeyKind::Secret),
            _ => None,
        }
    }

    /// The prefix every key of this kind starts with.
    pub fn prefix(self) -> &'static str {
        match self {
            KeyKind::Write => "kith_wk_",
            KeyKind::Secret => "kith_sk_",
        }
    }
}

/// An API key as listed (its secret is never stored, only its hash).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiKey {
    pub id: i64,
    /// Owning workspace.
    pub workspace_id: WorkspaceId,
    /// Write or secret.
    pub kind: KeyKind,
    /// A label.
    pub name: String,
    /// The first characters of the key, to recognise it.
    pub prefix: String,
    pub created_at: Timestamp,
    /// Revoked, if it was.
    pub revoked_at: Option<Timestamp>,
}

/// SHA-256 of a key's text: what is stored and looked up.
pub fn key_hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// How much of a key is kept in clear to recognise it in lists.
const SHOWN_PREFIX_CHARS: usize = 12;

/// The start of a key kept in clear as its [`ApiKey::prefix`].
pub(crate) fn shown_prefix(key: &str) -> String {
    key.chars().take(SHOWN_PREFIX_CHARS).collect()
}

/// One event on its way to storage.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// The workspace of the key that sent it.
    pub workspace_id: WorkspaceId,
    /// The validated event.
    pub event: Event,
    /// `message_digest(workspace_id, message_id)`.
    pub digest: [u8; 16],
}

impl Incoming {
    /// Wraps an event for the writer.
    pub fn new(workspace_id: WorkspaceId, event: Event) -> Self {
        let digest = message_digest(workspace_id, &event.message_id);
        Incoming { workspace_id, event, digest }
    }
}

/// The idempotency key of a message: 16 bytes of SHA-256 over the workspace id and messageId.
pub fn message_digest(workspace_id: WorkspaceId, message_id: &str) -> [u8; 16] {
    let mut hasher = Sha256::new();
    hasher.update(workspace_id.to_le_bytes());
    hasher.update(message_id.as_bytes());
    let digest = hasher.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

/// What storing one event did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// Committed to the database with its effect (backends without an event log).
    Stored(Stored),
    /// Committed to the event log; the projection works out its contact and interaction
    /// moments later (reads wait for it). Only backends with an event log answer this.
    Accepted,
    /// Its messageId was seen before: acknowledged, nothing changed.
    Duplicate,
    /// Its email is suppressed: acknowledged, nothing stored.
    Suppressed,
    /// Refused after reading the store (an identify without email for an unknown user).
    Rejected(Rejection),
}

/// The effect of a stored event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stored {
    /// The contact it reached; `None` while pending.
    pub contact_id: Option<ContactId>,
    /// Whether it added an activity interaction or was merged into the day's.
    pub activity: Activity,
    /// Kept waiting for an identify that names its user.
    pub pending: bool,
}

/// How an event met the one-per-day rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Activity {
    /// No activity (group, alias, Engage sync, pending).
    None,
    /// The first event of its contact-day: a new interaction.
    Added,
    /// Counted as a hit of the day's existing interaction.
    Merged,
}

/// A contact as listed and shown.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Contact {
    pub id: ContactId,
    /// Normalised email.
    pub email: String,
    /// Display name from traits.
    pub name: Option<String>,
    /// Merged traits.
    pub traits: Map<String, Value>,
    /// Traits that Engage computed.
    pub computed_traits: Vec<String>,
    /// Earliest event time.
    pub first_seen_at: Timestamp,
    /// Latest event time.
    pub last_seen_at: Timestamp,
    /// Latest interaction of any kind.
    pub last_interaction_at: Option<Timestamp>,
    /// The stored closeness key, `ln Σ w·exp(t/τ)` with t in days; `None` without interactions.
    pub closeness_key: Option<f64>,
    /// The last moment the score was warm or better.
    pub warm_until: Option<Timestamp>,
    /// Cadence set on the contact itself.
    pub cadence_days: Option<i64>,
    /// Cadence in force (own, else the shortest inherited from an audience or account rule).
    pub effective_cadence_days: Option<i64>,
    /// When the contact is due a touch.
    pub due_at: Option<Timestamp>,
    /// When the first event naming its email created the contact.
    pub created_at: Timestamp,
}

impl Contact {
    /// Closeness at `now` under `model`.
    pub fn closeness(&self, model: &Model, now: Timestamp) -> closeness::Closeness {
        model.closeness(self.closeness_key, closeness::days_of_millis(now.as_millisecond()))
    }
}

/// How a contact is addressed in the API: by id or by email.
#[derive(Debug, Clone, PartialEq)]
pub enum ContactKey {
    /// Numeric id.
    Id(ContactId),
    /// Email (normalised by the caller).
    Email(String),
}

/// An id linked to a contact.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Identity {
    /// The id.
    pub value: String,
    /// `user_id`, `anonymous_id` or `alias`.
    pub kind: String,
    /// When the id was linked to the contact.
    pub created_at: Timestamp,
}

/// One entry of a timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Interaction {
    pub id: i64,
    /// The contact whose timeline it is in.
    pub contact_id: ContactId,
    /// Activity or a manual kind.
    pub kind: closeness::InteractionKind,
    /// Day key in the workspace's time zone.
    pub day: i32,
    /// The first event of the day (activity) or the time given (manual).
    pub occurred_at: Timestamp,
    /// What happened.
    pub description: String,
    /// Events merged into this interaction (activity), 1 for manual ones.
    pub hits: i64,
}

/// One event of a contact's event stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredEvent {
    pub id: i64,
    /// Contact, `None` while pending.
    pub contact_id: Option<ContactId>,
    /// Idempotency key.
    pub message_id: String,
    /// Segment call type.
    pub event_type: String,
    /// Event/page/screen name or group id.
    pub name: Option<String>,
    /// Event time.
    pub occurred_at: Timestamp,
    /// Receive time.
    pub received_at: Timestamp,
    /// The event as received, without its write key.
    pub payload: Value,
}

/// A page of results and the cursor of the next page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Give this back to get the next page; `None` on the last.
    pub next: Option<Cursor>,
}

/// A keyset position: the sort value and id of the last row of a page.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Cursor {
    /// The sort column's value (a time, a closeness key or a text), as JSON.
    pub value: Value,
    /// The row id, breaking ties.
    pub id: i64,
}

/// Orders of the contact list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ContactSort {
    /// Most recently seen first.
    #[default]
    LastSeen,
    /// Closest first (an index scan on the closeness key).
    Closeness,
    /// Least close first.
    ClosenessAsc,
    /// Soonest due first (only contacts with a cadence).
    Due,
}

/// A contact list request.
#[derive(Debug, Clone, Default)]
pub struct ContactQuery {
    /// Substring of email, name or a trait value.
    pub search: Option<String>,
    /// Closest first or most recently seen first.
    pub sort: ContactSort,
    /// Only contacts whose key lies in `[min, max)` (a bucket, translated by the caller).
    pub key_range: Option<(Option<f64>, Option<f64>)>,
    /// Only members of this audience (key).
    pub audience: Option<String>,
    /// Only members of this account (group id).
    pub account: Option<String>,
    /// Only contacts due before this time.
    pub due_before: Option<Timestamp>,
    /// Only contacts whose score was last warm within `[from, to)`.
    pub warm_until_range: Option<(Timestamp, Timestamp)>,
    /// Only contacts a given user owns, or that nobody owns.
    pub owner: Option<OwnerFilter>,
    /// Continue after this position.
    pub cursor: Option<Cursor>,
    /// Page size.
    pub limit: usize,
}

/// An account (a Segment group).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Account {
    pub id: i64,
    /// The Segment `groupId`.
    pub group_id: String,
    /// Display name from traits.
    pub name: Option<String>,
    /// Merged traits.
    pub traits: Map<String, Value>,
    /// How many contacts belong to the account.
    pub member_count: i64,
    /// The highest closeness key among members.
    pub max_closeness_key: Option<f64>,
    /// Members' keys, for the mean score (computed by the caller at a moment).
    pub member_keys: Vec<Option<f64>>,
    /// The first group call.
    pub created_at: Timestamp,
    /// Last group call.
    pub updated_at: Timestamp,
}

/// An Engage audience.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Audience {
    pub id: i64,
    /// The `computation_key`.
    pub key: String,
    /// Engage's computation id.
    pub computation_id: Option<String>,
    /// Engage's space id.
    pub space_id: Option<String>,
    /// Current members.
    pub member_count: i64,
    /// Entries recorded.
    pub entered_count: i64,
    /// Exits recorded.
    pub exited_count: i64,
    /// First seen.
    pub created_at: Timestamp,
}

/// A contact's membership in an audience, current or past.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AudienceMembership {
    /// The audience key.
    pub key: String,
    /// Whether the contact is in it now.
    pub is_member: bool,
    /// The time of the last change.
    pub changed_at: Timestamp,
}

/// One entry or exit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AudienceHistoryEntry {
    /// The audience key.
    pub key: String,
    /// The contact.
    pub contact_id: ContactId,
    /// Entered or exited.
    pub entered: bool,
    /// The event time of the entry or exit.
    pub at: Timestamp,
}

/// A recorded alias conflict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AliasConflictRecord {
    pub id: i64,
    /// The alias's previousId.
    pub previous_id: String,
    /// The alias's userId.
    pub user_id: String,
    /// The contact of the userId.
    pub contact_id: ContactId,
    /// The contact the previousId belongs to.
    pub other_contact_id: ContactId,
    /// When the conflicting alias arrived.
    pub created_at: Timestamp,
    /// When a merge resolved it.
    pub resolved_at: Option<Timestamp>,
}

/// A cadence inherited by every member of an audience or account.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CadenceRule {
    pub id: i64,
    /// `audience` or `account`.
    pub target: String,
    /// The audience key or account groupId.
    pub target_key: String,
    /// Every N days.
    pub days: i64,
}

/// An interaction added by hand through the API or the web app.
#[derive(Debug, Clone, PartialEq)]
pub struct NewInteraction {
    /// Note, email, call or meeting.
    pub kind: closeness::InteractionKind,
    /// When it happened.
    pub occurred_at: Timestamp,
    /// What happened.
    pub text: String,
}

/// What kith would do with an event, without storing it (`POST /api/validate`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Preview {
    /// The contact it would reach, if it exists.
    pub contact_id: Option<ContactId>,
    /// Whether it would create the contact.
    pub creates_contact: bool,
    /// Whether it would wait as pending.
    pub pending: bool,
    /// Whether it would add an interaction, merge into the day's, or neither.
    pub activity: Activity,
    /// The day key it falls on.
    pub day: Option<i32>,
    /// Whether its messageId was already stored.
    pub duplicate: bool,
    /// Refused after reading the store.
    pub rejection: Option<Rejection>,
}

/// A nudge rule as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rule {
    pub id: i64,
    /// The rule.
    pub spec: kith_core::rules::RuleSpec,
    pub created_at: Timestamp,
    /// Last changed.
    pub updated_at: Timestamp,
}

/// One firing of a rule for a contact.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Firing {
    pub id: i64,
    /// The rule.
    pub rule_id: i64,
    /// The contact.
    pub contact_id: ContactId,
    /// What occurred, e.g. `Signed Up` or `became due`.
    pub trigger: String,
    /// When it occurred.
    pub triggered_at: Timestamp,
    /// When the rule acts (after its inaction delay).
    pub due_at: Timestamp,
    /// `waiting`, `fired` or `cancelled`.
    pub state: String,
    /// When it fired or was cancelled.
    pub decided_at: Option<Timestamp>,
}

/// An outbound message to deliver.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewDelivery {
    /// `webhook`, `email`, `message` or `segment`.
    pub kind: String,
    /// The url, the recipient or the Segment host.
    pub target: String,
    /// What to send.
    pub payload: serde_json::Value,
}

/// An outbound message and its delivery state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Delivery {
    pub id: i64,
    /// The workspace whose rule, digest or outbound Segment host it is for.
    pub workspace_id: WorkspaceId,
    /// `webhook`, `email` or `segment`.
    pub kind: String,
    /// The url, the recipient or the Segment host.
    pub target: String,
    /// What is sent.
    pub payload: serde_json::Value,
    /// `pending`, `sent`, `failed` or `skipped`.
    pub status: String,
    /// Attempts made.
    pub attempts: i64,
    /// The next attempt, while pending.
    pub next_attempt_at: Timestamp,
    /// The last error.
    pub last_error: Option<String>,
    /// When the message was queued.
    pub created_at: Timestamp,
    /// When the receiver took it; `None` until then.
    pub sent_at: Option<Timestamp>,
}

/// What a journey's step does to its contact, applied by the delivery job.
#[derive(Debug, Clone, PartialEq)]
pub enum StepChange {
    /// A note on the contact's timeline.
    Note(String),
    /// The contact's own cadence in days (none clears it).
    Cadence(Option<i64>),
}

/// How a delivery attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryResult {
    /// The receiver took it.
    Sent,
    /// Try again at this time.
    Retry {
        /// The earliest time of the next attempt.
        at: Timestamp,
        /// What went wrong.
        error: String,
    },
    /// Given up.
    Failed {
        /// What went wrong.
        error: String,
    },
    /// Not sent on purpose (a message its contact's consent does not allow); never retried.
    Skipped {
        /// Why, e.g. `unsubscribed`.
        reason: String,
    },
}

/// A rebuild of a workspace's history from its stored events: asked by `kith reproject`, the
/// API or the web app, and by itself when the workspace's time zone changes (every day is
/// counted again in the new zone). It runs in steps of a few thousand contacts, each in one
/// transaction, so ingest and reads go on meanwhile and a restart resumes where it stopped.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reprojection {
    pub workspace_id: WorkspaceId,
    /// Why it was asked for, e.g. "time zone changed".
    pub reason: String,
    pub requested_at: Timestamp,
    /// Contacts in the workspace when it was asked for.
    pub contacts_total: i64,
    /// Contacts rebuilt so far.
    pub contacts_done: i64,
    /// Events read so far.
    pub events_done: i64,
    /// `None` while it runs.
    pub finished_at: Option<Timestamp>,
}

impl Reprojection {
    /// The reason of the reprojection a time zone change asks for.
    pub const AFTER_TIME_ZONE_CHANGE: &'static str = "time zone changed";

    /// Whether it is still under way.
    pub fn running(&self) -> bool {
        self.finished_at.is_none()
    }
}

/// What one step of a reprojection did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ReprojectionStep {
    pub workspace_id: WorkspaceId,
    /// Contacts rebuilt.
    pub contacts: u64,
    /// Their events read.
    pub events: u64,
    /// Whether the workspace's reprojection is now finished.
    pub finished: bool,
}

/// What a pass of the nudge job found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct JobReport {
    /// Contacts whose bucket changed.
    pub bucket_changes: u64,
    /// Contacts that became due.
    pub became_due: u64,
    /// Firings that acted.
    pub fired: u64,
    /// Firings cancelled by their unless event.
    pub cancelled: u64,
}

/// A person who signs in to the web app. A user belongs to one workspace and sees only it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct User {
    pub id: i64,
    /// The workspace it sees.
    pub workspace_id: WorkspaceId,
    /// Normalised email, unique across workspaces (it is what signs in).
    pub email: String,
    /// The password's PHC hash string (argon2id); never the password, never serialised.
    #[serde(skip)]
    pub password_hash: String,
    pub created_at: Timestamp,
}

/// A signed-in session, found by the hash of its cookie's token.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// Who is signed in.
    pub user: User,
    /// When the session stops working.
    pub expires_at: Timestamp,
    /// When it was last used (its sign-in, until then); an idle session ends early.
    pub last_seen_at: Timestamp,
}

/// An account's health on one day, as the daily pass recorded it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthRecord {
    /// The account.
    pub account_id: i64,
    /// The day key (in the workspace's time zone) it is the score of.
    pub day: i32,
    /// 0 to 100.
    pub score: i64,
    /// `at_risk`, `needs_attention` or `healthy`.
    pub band: String,
    /// Each factor's contribution, as JSON.
    pub factors: String,
    /// When it was computed.
    pub recorded_at: Timestamp,
}

/// Events of an account's members in a window, and how many members sent them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemberEventCounts {
    /// Events.
    pub events: i64,
    /// Distinct members.
    pub members: i64,
}

/// A subscription topic: every template belongs to one, and a contact's consent is per topic.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Topic {
    pub id: i64,
    /// A name contacts recognise on their preferences page, e.g. "Product tips".
    pub name: String,
    /// Opt-in topics need a contact's yes before anything is sent; opt-out topics send until
    /// the contact says no.
    pub opt_in: bool,
    pub created_at: Timestamp,
}

/// What a template holds, as written; the server checks its syntax before storing it.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateSpec {
    /// A name people recognise.
    pub name: String,
    /// The topic its messages belong to.
    pub topic_id: i64,
    /// The subject line (a template).
    pub subject: String,
    /// The HTML body (a template, auto-escaped).
    pub html: String,
    /// The plain-text body (a template).
    pub text: String,
}

/// A stored email template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub id: i64,
    /// What it holds.
    pub spec: TemplateSpec,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Who a workspace's messages come from, and the key its unsubscribe links are signed with.
#[derive(Clone, PartialEq)]
pub struct Sender {
    /// The display name of the From address.
    pub from_name: Option<String>,
    /// The From address; the server's `smtp_from` when unset.
    pub from_address: Option<String>,
    /// The Reply-To address.
    pub reply_to: Option<String>,
    /// HMAC key of unsubscribe links (hex); never shown.
    pub link_secret: String,
}

/// The link key is left out: a logged sender must not let anyone forge unsubscribe links.
impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("from_name", &self.from_name)
            .field("from_address", &self.from_address)
            .field("reply_to", &self.reply_to)
            .finish_non_exhaustive()
    }
}

/// How many messages a contact may get, and when not, per workspace.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MessageLimits {
    /// At most this many messages per contact within `cap_window_hours`, across rules.
    pub cap_count: Option<i64>,
    /// The rolling window of the cap.
    pub cap_window_hours: Option<i64>,
    /// "HH:MM": messages due from then, in the contact's time zone, wait until `quiet_end`.
    pub quiet_start: Option<String>,
    /// "HH:MM": the end of quiet hours.
    pub quiet_end: Option<String>,
}

/// A contact's own choice about a topic.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Subscription {
    pub topic_id: i64,
    /// Subscribed or not.
    pub subscribed: bool,
    /// When the contact chose.
    pub updated_at: Timestamp,
}

/// A message considered for a contact: sent, bounced, held for quiet hours or skipped with a
/// reason.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessageEntry {
    pub contact_id: ContactId,
    /// The rule that sent it.
    pub rule_id: Option<i64>,
    /// The template.
    pub template_id: i64,
    /// The template's topic.
    pub topic_id: Option<i64>,
    /// The outbox delivery it comes from: a message held for quiet hours and later sent or
    /// skipped is one entry, changed as it goes.
    pub delivery_id: Option<i64>,
    /// `sent`, `bounced`, `held`, `skipped`, or `failed` (held, then it could not go).
    pub outcome: String,
    /// Why it was skipped (`unsubscribed`, `suppressed`, `no_consent`…) or bounced (the mail
    /// server's reply).
    pub reason: Option<String>,
    /// When it was decided.
    pub at: Timestamp,
    /// A held message: when it will go.
    pub send_at: Option<Timestamp>,
    /// A message rendered for sending: the random id its tracking links carry (the `email_id`
    /// of the email events).
    pub email_id: Option<String>,
    /// A message rendered for sending: its subject.
    pub subject: Option<String>,
}

/// What a contact did with a message that reached them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MessageActivity {
    /// The first open (the tracking pixel was fetched).
    pub opened_at: Option<Timestamp>,
    /// Opens counted, up to the bound kith keeps.
    pub opens: i64,
    /// The first click on a tracked link.
    pub clicked_at: Option<Timestamp>,
    /// Clicks counted, up to the bound kith keeps.
    pub clicks: i64,
    /// When the contact unsubscribed from the message's topic after receiving it.
    pub unsubscribed_at: Option<Timestamp>,
}

/// A message considered for a contact, as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageEntry {
    pub id: i64,
    /// What was recorded.
    pub entry: NewMessageEntry,
    /// Opens, clicks and unsubscribes since.
    pub activity: MessageActivity,
}

/// What a contact did with a tracked message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engagement {
    /// The tracking pixel was fetched.
    Open,
    /// A tracked link was followed.
    Click,
}

/// How message counts are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatsBy {
    /// Per template.
    Template,
    /// Per rule (messages sent by no rule are left out).
    Rule,
}

/// What became of the messages of a template or rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MessageCounts {
    /// Handed to the mail server: delivered or bounced.
    pub sent: i64,
    /// Accepted by the mail server.
    pub delivered: i64,
    /// Opened at least once.
    pub opened: i64,
    /// Clicked at least once.
    pub clicked: i64,
    /// Followed by an unsubscribe from their topic.
    pub unsubscribed: i64,
    /// Refused for good by the mail server.
    pub bounced: i64,
    /// Not sent: consent, suppression or the frequency cap.
    pub skipped: i64,
    /// Waiting for the end of the contact's quiet hours.
    pub held: i64,
}

/// A journey as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Journey {
    pub id: i64,
    /// The journey.
    pub spec: kith_core::journeys::JourneySpec,
    pub created_at: Timestamp,
    /// Last changed.
    pub updated_at: Timestamp,
}

/// A step an entry passed, and why: the "why it moved" of a contact's journey.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepTaken {
    /// The step's id.
    pub step: u32,
    /// When, in the journey's logical time (a wait's deadline, an awaited event's time).
    pub at: Timestamp,
    /// What happened.
    pub why: String,
}

/// One contact's way through a journey.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JourneyEntry {
    pub id: i64,
    /// The journey.
    pub journey_id: i64,
    /// The contact.
    pub contact_id: ContactId,
    /// The contact's email.
    pub email: String,
    /// What started it.
    pub trigger: String,
    /// When it started.
    pub entered_at: Timestamp,
    /// `active`, `completed` or `exited`.
    pub state: String,
    /// The step it is at, while active.
    pub step: Option<u32>,
    /// When the job looks at it next, while active.
    pub next_due_at: Option<Timestamp>,
    /// When it completed or exited.
    pub ended_at: Option<Timestamp>,
    /// Why it exited.
    pub reason: Option<String>,
    /// The steps passed, in order.
    pub moves: Vec<StepTaken>,
}

/// How many entries of a journey wait at a step now, and how many passed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StepCount {
    /// The step's id.
    pub step: u32,
    /// Active entries at it.
    pub waiting: i64,
    /// Entries that passed it.
    pub done: i64,
}

/// A journey's entries by state, and its steps' counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct JourneyCounts {
    /// Entries ever.
    pub entered: i64,
    /// Still in it.
    pub active: i64,
    /// Passed the last step.
    pub completed: i64,
    /// Left early.
    pub exited: i64,
    /// Per step id, for every step that has an entry at it or behind it.
    pub steps: Vec<StepCount>,
}

/// A stored track event, as a backtest reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackRecord {
    /// The contact.
    pub contact_id: ContactId,
    /// The event name.
    pub name: String,
    /// When it happened.
    pub time: Timestamp,
    /// Its properties.
    pub properties: Map<String, Value>,
}

/// A contact entering or leaving an Engage audience, as a backtest reads it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AudienceChange {
    /// The contact.
    pub contact_id: ContactId,
    /// Entered (else exited).
    pub entered: bool,
    /// When.
    pub at: Timestamp,
}

/// A stored interaction, as a backtest reads it to follow closeness and due dates over time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InteractionRecord {
    /// The contact.
    pub contact_id: ContactId,
    /// Its kind.
    pub kind: closeness::InteractionKind,
    /// When it happened.
    pub occurred_at: Timestamp,
}

/// A contact with a cadence in force, as a backtest reads it to find when it became due.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ContactCadence {
    /// The contact.
    pub contact_id: ContactId,
    /// Its own cadence, else the inherited one, in days.
    pub days: i64,
    /// When it was created: the due timer's start before any interaction.
    pub created_at: Timestamp,
}

/// What one pass of the journey job did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct JourneyReport {
    /// Entries looked at.
    pub entries: u64,
    /// Steps passed.
    pub steps: u64,
    /// Entries that completed or exited.
    pub ended: u64,
}

/// Whose items a list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerFilter {
    /// Those the user with this id owns.
    User(i64),
    /// Those nobody owns.
    Nobody,
}

/// What an owner owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OwnerSubject {
    /// An account.
    Account,
    /// A contact.
    Contact,
}

impl OwnerSubject {
    /// The name stored.
    pub fn as_str(self) -> &'static str {
        match self {
            OwnerSubject::Account => "account",
            OwnerSubject::Contact => "contact",
        }
    }
}

/// The score and band an account had when the health pass saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthObservation {
    /// 0 to 100.
    pub score: i64,
    /// `at_risk`, `needs_attention` or `healthy`.
    pub band: String,
}

/// A rule about an account's health that fires.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAccountFiring {
    /// The rule.
    pub rule_id: i64,
    /// The account.
    pub account_id: i64,
    /// What makes this firing one: a second with the same occurrence is not recorded.
    pub occurrence: String,
    /// What happened, in words (`became at risk`).
    pub trigger: String,
}

/// A rule about an account's health that fired.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccountFiring {
    pub id: i64,
    /// The rule.
    pub rule_id: i64,
    /// The account's id (not its groupId).
    pub account_id: i64,
    /// What happened.
    pub trigger: String,
    /// When.
    pub triggered_at: Timestamp,
}

/// A follow-up task on a contact or an account.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Task {
    pub id: i64,
    /// The contact it is about, if any.
    pub contact_id: Option<ContactId>,
    /// The account it is about (its id), if any.
    pub account_id: Option<i64>,
    /// The user who is to do it.
    pub assignee_id: Option<i64>,
    /// What to do.
    pub note: String,
    /// The day it is due (a day key in the workspace's time zone).
    pub due_day: i32,
    /// When it was done; `None` while open.
    pub done_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A task to create or the new values of one (checked by the caller: the contact, account and
/// assignee belong to the workspace).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSpec {
    /// The contact it is about.
    pub contact_id: Option<ContactId>,
    /// The account it is about.
    pub account_id: Option<i64>,
    /// Who is to do it.
    pub assignee_id: Option<i64>,
    /// What to do.
    pub note: String,
    /// The day it is due.
    pub due_day: i32,
}

/// Which tasks to list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskQuery {
    /// Only those of this user.
    pub assignee: Option<i64>,
    /// Only those on this contact.
    pub contact: Option<ContactId>,
    /// Only those on this account.
    pub account: Option<i64>,
    /// Only open ones due on or before this day.
    pub due_by: Option<i32>,
    /// Open ones only.
    pub open_only: bool,
    /// At most this many (1 to 500).
    pub limit: usize,
}
