//! kith's storage.
//!
//! [`Store`] is what the HTTP layer and the jobs talk to; [`sqlite::SqliteStore`] is the
//! embedded default and [`postgres::PostgresStore`] serves several nodes on one database.
//! Writes of events are planned once for every backend by [`plan`] and reach the store in
//! groups through the [`pipeline`].
#![forbid(unsafe_code)]

pub mod deliveries;
pub mod journeys;
pub mod pipeline;
pub mod plan;
pub mod postgres;
pub mod records;
mod sql;
pub mod sqlite;
pub mod state;

use async_trait::async_trait;
use jiff::Timestamp;
use journeys::JourneyStart;
use kith_core::journeys::JourneySpec;
use kith_core::rules::RuleSpec;
use kith_core::{Clock, Event};

pub use records::*;

/// How far the event log was appended and applied to what reads see (on SQLite, the last
/// sequence numbers, which count the events; on PostgreSQL, counts of events); their
/// difference is the projection's lag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogPosition {
    /// Appended and acknowledged.
    pub appended: i64,
    /// Applied by the projection.
    pub applied: i64,
    /// How many parts of the log this node's projection applies: a single node applies all
    /// of it; of several nodes on PostgreSQL, the one holding the projection lease.
    pub leases: u32,
}

/// A storage failure. Client mistakes never end up here; these are the server's problems.
///
/// The error a database or the system gave is kept as the [`source`](std::error::Error::source),
/// so a log line can show the whole chain (see [`error_chain`]) and code can look at what failed,
/// while a client is told neither. The text of each variant tells the whole story on its own too,
/// so a log line or a command's error that prints only the text loses nothing.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite refused or failed.
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL refused or failed.
    #[error("PostgreSQL: {}", postgres::explain(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// The store could not do what was asked for a reason kith states: no connection in time, a
    /// task or thread that stopped, a file it cannot create, a stored value it cannot read.
    #[error("{message}")]
    Unavailable {
        /// What went wrong, with the text of its cause.
        message: String,
        /// The error behind it, if there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The transaction this request was written in failed: every request of the group the
    /// ingest pipeline wrote together is answered with the one error.
    #[error(transparent)]
    Batch(std::sync::Arc<StoreError>),
    /// A record the caller named does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The request contradicts stored data (e.g. merging a contact into itself).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database was written by a newer kith.
    #[error("the database schema is at version {found}, newer than this kith knows ({known}); upgrade kith")]
    SchemaTooNew {
        /// Version in the database.
        found: i64,
        /// Newest version this binary knows.
        known: i64,
    },
}

impl StoreError {
    /// A failure kith describes, with no error behind it.
    pub fn unavailable(message: impl Into<String>) -> Self {
        StoreError::Unavailable { message: message.into(), source: None }
    }

    /// A failure kith describes, caused by `source`: the text is `message` followed by the
    /// source's chain, and the source is kept.
    pub fn caused(message: impl std::fmt::Display, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Unavailable {
            message: format!("{message}: {}", error_chain(&source)),
            source: Some(Box::new(source)),
        }
    }
}

/// `error` followed by each of its causes that the text so far does not already tell, joined by
/// `": "`. Many errors show only their own layer ("error performing TLS handshake") and keep the
/// one that says what to change ("invalid peer certificate: UnknownIssuer") as their source.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(error) = cause {
        let told = error.to_string();
        if !text.contains(&told) {
            text.push_str(": ");
            text.push_str(&told);
        }
        cause = error.source();
    }
    text
}

/// Told what each event did once a backend that acknowledges events before applying them
/// (SQLite's event log) has applied them: the events and their outcomes, in order.
pub type AppliedSink = std::sync::Arc<dyn Fn(&[Incoming], &[Outcome]) + Send + Sync>;

/// Shorthand for store results.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Everything kith reads and writes. Implemented once per database.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The clock the store was opened with: every time kith stamps or compares comes from it.
    fn clock(&self) -> Clock;

    // Workspaces and keys.

    /// Creates a workspace with default settings.
    async fn create_workspace(&self, name: &str) -> Result<Workspace>;
    /// All workspaces, oldest first.
    async fn workspaces(&self) -> Result<Vec<Workspace>>;
    /// One workspace.
    async fn workspace(&self, id: WorkspaceId) -> Result<Option<Workspace>>;
    /// Changes settings; a new half-life or weights recompute every closeness key.
    async fn update_workspace(&self, id: WorkspaceId, patch: WorkspacePatch) -> Result<Workspace>;
    /// The workspace's signing secret, if one is set.
    async fn signing_secret(&self, id: WorkspaceId) -> Result<Option<String>>;
    /// Stores a key by its hash; `key` is the full text, shown to the user once.
    async fn create_key(&self, workspace: WorkspaceId, kind: KeyKind, name: &str, key: &str) -> Result<ApiKey>;
    /// The key with this hash, revoked or not.
    async fn find_key(&self, hash: [u8; 32]) -> Result<Option<ApiKey>>;
    /// A workspace's keys, newest first.
    async fn keys(&self, workspace: WorkspaceId) -> Result<Vec<ApiKey>>;
    /// Revokes a key; `false` if the workspace has no such key.
    async fn revoke_key(&self, workspace: WorkspaceId, id: i64) -> Result<bool>;

    // Ingest.

    /// Applies a batch of events in one transaction; one outcome per event, in order.
    async fn write_events(&self, batch: Vec<Incoming>) -> Result<Vec<Outcome>>;
    /// Registers where applied events are reported; a backend whose `write_events` answer
    /// already says what each event did (it applies as it commits) never calls it.
    fn report_applied(&self, _sink: AppliedSink) {}
    /// Waits until every acknowledged event is applied to what reads see (an event log's
    /// projection has caught up); at once for a backend that applies events as it commits.
    async fn settle(&self) -> Result<()> {
        Ok(())
    }
    /// How far an event log and its projection have come; `None` for a backend that applies
    /// events as it commits.
    fn log_position(&self) -> Option<LogPosition> {
        None
    }
    /// What writing `event` would do, without writing (`POST /api/validate`).
    async fn preview(&self, workspace: WorkspaceId, event: Event) -> Result<Preview>;
    /// Deletes pending events older than each workspace's retention; returns how many.
    async fn expire_pending(&self, now: Timestamp) -> Result<u64>;

    // Contacts.

    /// A page of contacts.
    async fn contacts(&self, workspace: WorkspaceId, query: ContactQuery) -> Result<Page<Contact>>;
    /// One contact by id or email.
    async fn contact(&self, workspace: WorkspaceId, key: ContactKey) -> Result<Option<Contact>>;
    /// The ids linked to a contact.
    async fn identities(&self, workspace: WorkspaceId, contact: ContactId) -> Result<Vec<Identity>>;
    /// A page of a contact's timeline, newest first.
    async fn timeline(
        &self,
        workspace: WorkspaceId,
        contact: ContactId,
        cursor: Option<Cursor>,
        limit: usize,
    ) -> Result<Page<Interaction>>;
    /// A page of a contact's events, newest first.
    async fn events(
        &self,
        workspace: WorkspaceId,
        contact: ContactId,
        cursor: Option<Cursor>,
        limit: usize,
    ) -> Result<Page<StoredEvent>>;
    /// The contact's identify events up to `until`, oldest first (to show traits at a time).
    async fn identify_payloads(
        &self,
        workspace: WorkspaceId,
        contact: ContactId,
        until: Timestamp,
    ) -> Result<Vec<String>>;
    /// Adds a manual interaction; it moves closeness and resets the due timer.
    async fn add_interaction(
        &self,
        workspace: WorkspaceId,
        contact: ContactId,
        interaction: NewInteraction,
    ) -> Result<Interaction>;
    /// Erases a contact and everything derived from it; optionally suppresses its email.
    async fn delete_contact(&self, workspace: WorkspaceId, contact: ContactId, suppress: bool) -> Result<bool>;
    /// Moves everything of `from` into `into` and deletes `from`.
    async fn merge_contacts(&self, workspace: WorkspaceId, into: ContactId, from: ContactId) -> Result<Contact>;
    /// Sets or clears a contact's own cadence.
    async fn set_cadence(&self, workspace: WorkspaceId, contact: ContactId, days: Option<i64>) -> Result<Contact>;
    /// Alias conflicts, unresolved first.
    async fn alias_conflicts(&self, workspace: WorkspaceId) -> Result<Vec<AliasConflictRecord>>;

    // History rebuilt from the stored events.

    /// Asks for the workspace's history to be rebuilt from its stored events (a reprojection
    /// under way starts over); the background jobs or `kith reproject` run it.
    async fn request_reprojection(&self, workspace: WorkspaceId, reason: &str) -> Result<Reprojection>;
    /// The workspace's latest reprojection, running or finished.
    async fn reprojection(&self, workspace: WorkspaceId) -> Result<Option<Reprojection>>;
    /// Rebuilds up to `contacts` more contacts of the oldest unfinished reprojection; `None`
    /// when none is unfinished.
    async fn reproject_step(&self, contacts: usize) -> Result<Option<ReprojectionStep>>;

    // Accounts and audiences.

    /// Accounts, most members first.
    async fn accounts(&self, workspace: WorkspaceId, limit: usize) -> Result<Vec<Account>>;
    /// One account by groupId.
    async fn account(&self, workspace: WorkspaceId, group_id: &str) -> Result<Option<Account>>;
    /// The accounts a contact belongs to.
    async fn contact_accounts(&self, workspace: WorkspaceId, contact: ContactId) -> Result<Vec<Account>>;
    /// Audiences with counts.
    async fn audiences(&self, workspace: WorkspaceId) -> Result<Vec<Audience>>;
    /// One audience by key.
    async fn audience(&self, workspace: WorkspaceId, key: &str) -> Result<Option<Audience>>;
    /// A contact's audience memberships, current and past.
    async fn contact_audiences(&self, workspace: WorkspaceId, contact: ContactId) -> Result<Vec<AudienceMembership>>;
    /// Entries and exits of an audience, or of a contact, newest first.
    async fn audience_history(
        &self,
        workspace: WorkspaceId,
        audience: Option<&str>,
        contact: Option<ContactId>,
        limit: usize,
    ) -> Result<Vec<AudienceHistoryEntry>>;
    /// Cadence rules.
    async fn cadence_rules(&self, workspace: WorkspaceId) -> Result<Vec<CadenceRule>>;
    /// Creates or replaces the rule for an audience or account; members' due dates follow.
    async fn set_cadence_rule(&self, workspace: WorkspaceId, target: &str, key: &str, days: i64)
        -> Result<CadenceRule>;
    /// Deletes a rule; members' due dates follow.
    async fn delete_cadence_rule(&self, workspace: WorkspaceId, id: i64) -> Result<bool>;

    // Account health.

    /// The workspace's health model as stored (JSON), if one was set.
    async fn health_model(&self, workspace: WorkspaceId) -> Result<Option<String>>;
    /// Stores the workspace's health model (JSON, validated by the caller).
    async fn set_health_model(&self, workspace: WorkspaceId, model: &str) -> Result<()>;
    /// The CSM's rating of an account (1–5), if set.
    async fn account_rating(&self, workspace: WorkspaceId, account: i64) -> Result<Option<i64>>;
    /// Sets (validated by the caller) or clears an account's CSM rating.
    async fn set_account_rating(&self, workspace: WorkspaceId, account: i64, rating: Option<i64>) -> Result<()>;
    /// The product events (track, page, screen; or only tracks named `event`) of an account's
    /// members with an event time in `[since_ms, until_ms)`, and how many members sent them.
    async fn member_event_counts(
        &self,
        workspace: WorkspaceId,
        account: i64,
        since_ms: i64,
        until_ms: i64,
        event: Option<&str>,
    ) -> Result<MemberEventCounts>;
    /// Records an account's health of a day; a second record of the same day replaces it.
    async fn record_health(&self, workspace: WorkspaceId, record: HealthRecord) -> Result<()>;
    /// An account's recorded health, newest day first.
    async fn health_history(&self, workspace: WorkspaceId, account: i64, limit: usize) -> Result<Vec<HealthRecord>>;

    /// Records the score and band the health pass sees of an account; returns what it saw the
    /// time before (`None` the first time). Of two passes recording at once, one sees the
    /// other's: a change is seen once.
    async fn observe_health(
        &self,
        workspace: WorkspaceId,
        account: i64,
        observation: HealthObservation,
    ) -> Result<Option<HealthObservation>>;
    /// Records that a rule about an account's health fired and queues its deliveries, in one
    /// transaction; `false` (nothing queued) if this occurrence was already recorded.
    async fn fire_for_account(
        &self,
        workspace: WorkspaceId,
        firing: NewAccountFiring,
        deliveries: Vec<NewDelivery>,
    ) -> Result<bool>;
    /// Firings of rules about accounts, newest first, of a rule and/or an account.
    async fn account_firings(
        &self,
        workspace: WorkspaceId,
        rule: Option<i64>,
        account: Option<i64>,
        limit: usize,
    ) -> Result<Vec<AccountFiring>>;

    // Owners and follow-up tasks.

    /// Sets (a user of the workspace, checked by the caller) or clears the owner of an account
    /// or a contact of the workspace.
    async fn set_owner(&self, workspace: WorkspaceId, subject: OwnerSubject, id: i64, user: Option<i64>) -> Result<()>;
    /// Every owned account or contact of the workspace, as `(its id, the owner's user id)`.
    async fn owners(&self, workspace: WorkspaceId, subject: OwnerSubject) -> Result<Vec<(i64, i64)>>;
    /// The owner of one account or contact.
    async fn owner(&self, workspace: WorkspaceId, subject: OwnerSubject, id: i64) -> Result<Option<i64>>;
    /// Creates a task.
    async fn create_task(&self, workspace: WorkspaceId, spec: TaskSpec) -> Result<Task>;
    /// One task.
    async fn task(&self, workspace: WorkspaceId, id: i64) -> Result<Option<Task>>;
    /// Tasks, by due day then id.
    async fn tasks(&self, workspace: WorkspaceId, query: TaskQuery) -> Result<Vec<Task>>;
    /// Replaces a task's contact, account, assignee, note and due day; `None` if there is no such task.
    async fn update_task(&self, workspace: WorkspaceId, id: i64, spec: TaskSpec) -> Result<Option<Task>>;
    /// Marks a task done (now) or open again; `None` if there is no such task.
    async fn set_task_done(&self, workspace: WorkspaceId, id: i64, done: bool) -> Result<Option<Task>>;
    /// Deletes a task; `false` if there is no such task.
    async fn delete_task(&self, workspace: WorkspaceId, id: i64) -> Result<bool>;
    /// Claims a user's own digest of `day`; `false` if it was already sent.
    async fn claim_owner_digest(&self, user: i64, day: i32) -> Result<bool>;

    // Nudges and outbound messages.

    /// A workspace's rules.
    async fn rules(&self, workspace: WorkspaceId) -> Result<Vec<Rule>>;
    /// One rule.
    async fn rule(&self, workspace: WorkspaceId, id: i64) -> Result<Option<Rule>>;
    /// Creates a rule (validated by the caller).
    async fn create_rule(&self, workspace: WorkspaceId, spec: RuleSpec) -> Result<Rule>;
    /// Replaces a rule; `None` if there is no such rule.
    async fn update_rule(&self, workspace: WorkspaceId, id: i64, spec: RuleSpec) -> Result<Option<Rule>>;
    /// Deletes a rule and cancels its waiting firings.
    async fn delete_rule(&self, workspace: WorkspaceId, id: i64) -> Result<bool>;
    /// Firings, newest first, of a rule and/or a contact.
    async fn firings(
        &self,
        workspace: WorkspaceId,
        rule: Option<i64>,
        contact: Option<ContactId>,
        limit: usize,
    ) -> Result<Vec<Firing>>;
    /// Records bucket changes and newly due contacts as of `now`, firing the rules they trigger.
    async fn evaluate_contacts(&self, now: Timestamp) -> Result<JobReport>;
    /// Acts on up to `limit` firings due by `now`.
    async fn fire_due(&self, now: Timestamp, limit: usize) -> Result<JobReport>;
    /// Queues outbound messages, due at `now`.
    async fn enqueue(&self, workspace: WorkspaceId, deliveries: Vec<NewDelivery>, now: Timestamp) -> Result<()>;
    /// Leases up to `limit` deliveries due by `now` for `lease`.
    async fn claim_deliveries(
        &self,
        now: Timestamp,
        limit: usize,
        lease: jiff::SignedDuration,
    ) -> Result<Vec<Delivery>>;
    /// Records how a delivery attempt ended.
    async fn finish_delivery(&self, id: i64, result: DeliveryResult, now: Timestamp) -> Result<()>;
    /// Applies a journey's note or cadence step to its contact and marks its delivery sent, in
    /// one transaction; `false` if that delivery was applied already (a retry after a crash).
    async fn apply_to_contact(
        &self,
        delivery: i64,
        workspace: WorkspaceId,
        contact: ContactId,
        change: StepChange,
        now: Timestamp,
    ) -> Result<bool>;
    /// Deliveries, newest first, optionally of one status, before an id.
    async fn deliveries(
        &self,
        workspace: WorkspaceId,
        status: Option<&str>,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Delivery>>;
    /// Puts a failed delivery back in the queue.
    async fn retry_delivery(&self, workspace: WorkspaceId, id: i64, now: Timestamp) -> Result<bool>;
    /// The outbound Segment host and write key, when both are set.
    async fn segment_destination(&self, workspace: WorkspaceId) -> Result<Option<(String, String)>>;
    /// Claims the digest of `day` (a day key); `false` if it was already sent.
    async fn claim_digest(&self, workspace: WorkspaceId, day: i32) -> Result<bool>;

    // Journeys.

    /// A workspace's journeys.
    async fn journeys(&self, workspace: WorkspaceId) -> Result<Vec<Journey>>;
    /// One journey.
    async fn journey(&self, workspace: WorkspaceId, id: i64) -> Result<Option<Journey>>;
    /// Creates a journey (validated by the caller).
    async fn create_journey(&self, workspace: WorkspaceId, spec: JourneySpec) -> Result<Journey>;
    /// Replaces a journey; `None` if there is no such journey. Entries keep their position and
    /// the record of the steps they passed.
    async fn update_journey(&self, workspace: WorkspaceId, id: i64, spec: JourneySpec) -> Result<Option<Journey>>;
    /// Deletes a journey with its entries and their records.
    async fn delete_journey(&self, workspace: WorkspaceId, id: i64) -> Result<bool>;
    /// Moves up to `limit` entries due by `now` as far as their contacts' events take them,
    /// queuing what the steps they pass send; each step acts at most once per entry.
    async fn advance_journeys(&self, now: Timestamp, limit: usize) -> Result<JourneyReport>;
    /// Enters every member of an account into the journeys its health change starts (each
    /// contact once per occurrence, as the journey's entry policy allows); the entries created.
    async fn enter_account_members(
        &self,
        workspace: WorkspaceId,
        account: i64,
        starts: Vec<JourneyStart>,
    ) -> Result<usize>;
    /// A journey's entries by state and its steps' counts.
    async fn journey_counts(&self, workspace: WorkspaceId, journey: i64) -> Result<JourneyCounts>;
    /// Active entries of a journey at a step, oldest first.
    async fn journey_step_entries(
        &self,
        workspace: WorkspaceId,
        journey: i64,
        step: u32,
        limit: usize,
    ) -> Result<Vec<JourneyEntry>>;
    /// A contact's entries in every journey, newest first, with the steps each passed.
    async fn contact_journeys(&self, workspace: WorkspaceId, contact: ContactId) -> Result<Vec<JourneyEntry>>;
    /// Track events of known contacts that happened in `[since, until]`, by contact and time.
    async fn track_history(
        &self,
        workspace: WorkspaceId,
        since: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<TrackRecord>>;
    /// Entries into and exits from an audience in `[since, until]`, in time order.
    async fn audience_changes(
        &self,
        workspace: WorkspaceId,
        audience: &str,
        since: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<AudienceChange>>;
    /// Every interaction up to `until`, by contact and time (closeness needs the whole past).
    async fn interaction_history(&self, workspace: WorkspaceId, until: Timestamp) -> Result<Vec<InteractionRecord>>;
    /// The contacts with a cadence in force, by id.
    async fn cadences(&self, workspace: WorkspaceId) -> Result<Vec<ContactCadence>>;
    /// Every account's daily health records from day `since_day` on, by account and day.
    async fn health_records(&self, workspace: WorkspaceId, since_day: i32) -> Result<Vec<HealthRecord>>;
    /// Every `(account, contact)` membership of the workspace, by account.
    async fn account_memberships(&self, workspace: WorkspaceId) -> Result<Vec<(i64, ContactId)>>;

    // Messages to contacts: topics, templates, the sender, consent and the message log.

    /// A workspace's subscription topics, oldest first.
    async fn topics(&self, workspace: WorkspaceId) -> Result<Vec<Topic>>;
    /// Creates a topic; [`StoreError::Conflict`] if the workspace has one of that name.
    async fn create_topic(&self, workspace: WorkspaceId, name: &str, opt_in: bool) -> Result<Topic>;
    /// Renames a topic and sets whether it is opt-in; `None` if there is no such topic,
    /// [`StoreError::Conflict`] if another topic of the workspace has that name.
    async fn update_topic(&self, workspace: WorkspaceId, id: i64, name: &str, opt_in: bool) -> Result<Option<Topic>>;
    /// Deletes a topic no template uses, with the contacts' choices about it; `false` if there is
    /// no such topic or a template uses it.
    async fn delete_topic(&self, workspace: WorkspaceId, id: i64) -> Result<bool>;
    /// A workspace's templates, oldest first.
    async fn templates(&self, workspace: WorkspaceId) -> Result<Vec<Template>>;
    /// One template.
    async fn template(&self, workspace: WorkspaceId, id: i64) -> Result<Option<Template>>;
    /// Stores a template (checked by the caller).
    async fn create_template(&self, workspace: WorkspaceId, spec: TemplateSpec) -> Result<Template>;
    /// Replaces a template; `None` if there is no such template.
    async fn update_template(&self, workspace: WorkspaceId, id: i64, spec: TemplateSpec) -> Result<Option<Template>>;
    /// Deletes a template; messages still queued for it fail when their turn comes.
    async fn delete_template(&self, workspace: WorkspaceId, id: i64) -> Result<bool>;
    /// The workspace's sender; the first call stores `new_secret` as its link key.
    async fn sender(&self, workspace: WorkspaceId, new_secret: &str) -> Result<Sender>;
    /// Replaces the from name, from address and reply-to (the link key stays).
    async fn set_sender(&self, workspace: WorkspaceId, sender: Sender) -> Result<Sender>;
    /// The workspace's frequency cap and quiet hours (none when never set).
    async fn message_limits(&self, workspace: WorkspaceId) -> Result<MessageLimits>;
    /// Replaces the frequency cap and quiet hours (checked by the caller; the sender exists).
    async fn set_message_limits(&self, workspace: WorkspaceId, limits: MessageLimits) -> Result<()>;
    /// How many messages were sent to a contact since `since`.
    async fn messages_sent_since(&self, workspace: WorkspaceId, contact: ContactId, since: Timestamp) -> Result<i64>;
    /// A contact's own choices per topic.
    async fn subscriptions(&self, workspace: WorkspaceId, contact: ContactId) -> Result<Vec<Subscription>>;
    /// Records a contact's choice about a topic.
    async fn set_subscription(
        &self,
        workspace: WorkspaceId,
        contact: ContactId,
        topic: i64,
        subscribed: bool,
        at: Timestamp,
    ) -> Result<()>;
    /// The JSON of the event that started a firing, if an event did and it is still stored.
    async fn firing_event(&self, workspace: WorkspaceId, firing: i64) -> Result<Option<String>>;
    /// Whether an email is on the workspace's suppression list.
    async fn is_suppressed(&self, workspace: WorkspaceId, email: &str) -> Result<bool>;
    /// Records a message considered for a contact; an entry of a delivery already recorded (a
    /// message held for quiet hours) replaces what was recorded of it.
    async fn record_message(&self, workspace: WorkspaceId, entry: NewMessageEntry) -> Result<()>;
    /// Marks the entry of a held message whose delivery failed for good as `failed`, with why; a
    /// delivery that was never held has no entry to mark.
    async fn fail_held_message(&self, workspace: WorkspaceId, delivery: i64, reason: &str, at: Timestamp)
        -> Result<()>;
    /// The messages considered for a contact, newest first.
    async fn message_log(&self, workspace: WorkspaceId, contact: ContactId, limit: usize) -> Result<Vec<MessageEntry>>;
    /// Counts an open or a click of the message with this `email_id`, the first one's time
    /// kept; the message as it now stands, or `None` if there is no such message or it already
    /// has `limit` of them (nothing is counted then).
    async fn record_engagement(
        &self,
        workspace: WorkspaceId,
        email_id: &str,
        engagement: Engagement,
        at: Timestamp,
        limit: i64,
    ) -> Result<Option<MessageEntry>>;
    /// Marks the latest message of `topic` that reached the contact as followed by an
    /// unsubscribe, unless one already is; that message, if any.
    async fn record_unsubscribe(
        &self,
        workspace: WorkspaceId,
        contact: ContactId,
        topic: i64,
        at: Timestamp,
    ) -> Result<Option<MessageEntry>>;
    /// Records that the mail server refused the contact's address for good.
    async fn record_bounce(
        &self,
        workspace: WorkspaceId,
        contact: ContactId,
        email: &str,
        reason: &str,
        at: Timestamp,
    ) -> Result<()>;
    /// Whether the contact's current address bounced.
    async fn is_bounced(&self, workspace: WorkspaceId, contact: ContactId, email: &str) -> Result<bool>;
    /// Whether the contact's event stream holds a track call of this name.
    async fn has_track(&self, workspace: WorkspaceId, contact: ContactId, name: &str) -> Result<bool>;
    /// What became of the messages of each template or each rule.
    async fn message_stats(&self, workspace: WorkspaceId, by: StatsBy) -> Result<Vec<(i64, MessageCounts)>>;
    /// Queues a track call about a contact to the workspace's outbound Segment host, if one is
    /// configured; erased with the contact.
    async fn enqueue_track(
        &self,
        workspace: WorkspaceId,
        contact: ContactId,
        event: &str,
        properties: serde_json::Map<String, serde_json::Value>,
        at: Timestamp,
    ) -> Result<()>;

    // Users and sessions of the web app.

    /// Creates a user of `workspace`; `email` is normalised by the caller and `password_hash`
    /// is a PHC string. [`StoreError::Conflict`] if the email is taken.
    async fn create_user(&self, workspace: WorkspaceId, email: &str, password_hash: &str) -> Result<User>;
    /// The user with this (normalised) email, in any workspace.
    async fn user_by_email(&self, email: &str) -> Result<Option<User>>;
    /// How many users exist, in every workspace (none: the first start creates one).
    async fn user_count(&self) -> Result<i64>;
    /// A workspace's users, oldest first.
    async fn users(&self, workspace: WorkspaceId) -> Result<Vec<User>>;
    /// Stores a session by the SHA-256 of its token; expired sessions are deleted on the way.
    async fn create_session(&self, user: i64, token_hash: [u8; 32], expires_at: Timestamp) -> Result<()>;
    /// The session with this token hash, if it exists and has not expired at `now`.
    async fn session(&self, token_hash: [u8; 32], now: Timestamp) -> Result<Option<Session>>;
    /// Ends a session (sign-out); ending an unknown one is not an error.
    async fn delete_session(&self, token_hash: [u8; 32]) -> Result<()>;
    /// Records that a session was used at `at`, which keeps it from ending as idle.
    async fn touch_session(&self, token_hash: [u8; 32], at: Timestamp) -> Result<()>;
    /// Replaces a user's password hash and ends all their sessions.
    async fn set_password(&self, user: i64, password_hash: &str) -> Result<()>;
    /// Removes a user and ends their sessions; `NotFound` if there is no such user.
    async fn delete_user(&self, user: i64) -> Result<()>;

    // Operations.

    /// Whether the database answers.
    async fn ping(&self) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;
    use std::sync::Arc;

    use super::*;

    /// A real SQLite failure: the statement names a table that does not exist.
    fn sqlite_failure() -> StoreError {
        let connection = rusqlite::Connection::open_in_memory().expect("an in-memory database");
        connection.execute("SELECT * FROM missing_table", []).expect_err("no such table").into()
    }

    #[test]
    fn a_database_error_keeps_its_source() {
        let error = sqlite_failure();
        let source = error.source().expect("the SQLite error is kept as the source");
        assert!(source.downcast_ref::<rusqlite::Error>().is_some(), "{source:?}");
        assert!(error.to_string().contains("missing_table"), "the text tells the cause: {error}");
    }

    #[test]
    fn a_failed_batch_keeps_the_source_of_its_transaction() {
        let error = StoreError::Batch(Arc::new(sqlite_failure()));
        let source = error.source().expect("the cause of the shared failure is kept");
        assert!(source.downcast_ref::<rusqlite::Error>().is_some(), "{source:?}");
        assert!(error_chain(&error).contains("missing_table"), "{}", error_chain(&error));
    }

    #[test]
    fn a_failure_kith_describes_keeps_the_error_behind_it() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "permission denied");
        let error = StoreError::caused("cannot create /data/kith.db", io);
        assert_eq!(error.to_string(), "cannot create /data/kith.db: permission denied");
        assert!(error.source().is_some_and(|source| source.downcast_ref::<std::io::Error>().is_some()));
        assert_eq!(error_chain(&error), error.to_string(), "a cause already told is not told twice");
    }
}
