//! The PostgreSQL backend, for several kith nodes on one database.
//!
//! Every node appends the events it accepts to the event log and answers once that is
//! committed; the node holding the projection lease applies the log to everything derived
//! (`log.rs`). Reads of what events derive wait until the projection has applied what was
//! acknowledged before them ([`PostgresStore::wait_applied`]), on whichever node they run.
//! Writes that plan from what they read (the projection's batches, manual interactions,
//! merges, deletions, cadences) take one transaction-scoped advisory lock first
//! ([`lock_contacts`]): they run one at a time across all nodes, each seeing everything the
//! previous one committed, which is what keeps "one activity per contact per day" and the
//! closeness keys exact. Background jobs claim their rows with `FOR UPDATE SKIP LOCKED`, so
//! every node can run them.

mod admin;
mod connect;
mod dedup;
mod health;
mod journeys;
mod log;
mod messages;
mod migrate;
mod nudges;
mod owners;
mod read;
mod reproject;
mod users;
mod write;

use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use kith_core::journeys::JourneySpec;
use kith_core::rules::RuleSpec;
use kith_core::Clock;
use kith_core::Event;
use tokio_postgres::GenericClient;

use crate::journeys::JourneyStart;
use crate::records::*;
use crate::{Result, Store, StoreError};

pub use connect::{create_database, drop_database, with_database_name, SslMode, DEFAULT_CONNECT_TIMEOUT};
pub use log::{LANES, LANE_LOCKS};
pub use migrate::MIGRATIONS;

/// The advisory lock that serialises the writes planned from what they read.
const CONTACTS_LOCK: i64 = 0x6b69_7468_0001;
/// The advisory lock held while migrating, so that nodes starting together migrate once.
const MIGRATION_LOCK: i64 = 0x6b69_7468_0002;

/// How long a statement may run, and an operation wait on the database, unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Options for connecting.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// `postgres://user:password@host:port/database`, with libpq's `sslmode`, `sslrootcert`
    /// and `connect_timeout` if wanted.
    pub url: String,
    /// Connections this node keeps open at most.
    pub max_connections: usize,
    /// The longest a statement may run on the server (its `statement_timeout`) and the longest
    /// one operation waits on the database, a connection included; past it the operation fails,
    /// so a request is answered 503 instead of hanging on a frozen database.
    pub timeout: Duration,
    /// Where every time the store stamps comes from.
    pub clock: Clock,
}

impl PostgresOptions {
    /// Defaults for a database URL.
    pub fn new(url: impl Into<String>) -> Self {
        PostgresOptions { url: url.into(), max_connections: 16, timeout: DEFAULT_TIMEOUT, clock: Clock::system() }
    }
}

/// Runs `$work`, a future using `$client: &mut Client` taken from the store's pool, by the
/// operation's deadline (or by `$deadline`): see [`connect::Connections::finish`].
macro_rules! on_connection {
    ($store:ident, |$client:ident| $work:expr) => {
        on_connection!($store, $store.connections.deadline(), |$client| $work)
    };
    ($store:ident, $deadline:expr, |$client:ident| $work:expr) => {{
        let deadline = $deadline;
        let mut connection = $store.connections.get(deadline).await?;
        let answer = {
            let $client: &mut tokio_postgres::Client = &mut connection;
            tokio::time::timeout_at(deadline, $work).await
        };
        $store.connections.finish(connection, answer)
    }};
}

/// The PostgreSQL store.
#[derive(Clone)]
pub struct PostgresStore {
    connections: connect::Connections,
    clock: Clock,
    log: std::sync::Arc<log::Log>,
    partitions: std::sync::Arc<dedup::Partitions>,
}

impl PostgresStore {
    /// The store's time, in milliseconds since the epoch.
    fn now(&self) -> i64 {
        self.clock.now().as_millisecond()
    }

    /// Connects and migrates the database.
    pub async fn open(options: &PostgresOptions) -> Result<Self> {
        let connections = connect::Connections::open(&options.url, options.max_connections, options.timeout)?;
        migrate::run(&mut **connections.get(connections.deadline()).await?, options.clock.now().as_millisecond())
            .await?;
        let log = log::Log::start(connections.clone(), options.timeout);
        Ok(PostgresStore { connections, clock: options.clock.clone(), log, partitions: Default::default() })
    }

    /// Waits, at most the database timeout, until the projection has applied every entry of
    /// the event log visible when the call started: everything acknowledged before it, on
    /// any node.
    async fn wait_applied(&self) -> Result<()> {
        let deadline = self.connections.deadline();
        let (heads, mut applied) = on_connection!(self, deadline, |c| log::heads(c))?;
        let mut changed = self.log.watch_applied();
        let mut pause = Duration::from_millis(1);
        while !log::caught_up(&heads, &applied) {
            if tokio::time::Instant::now() + pause > deadline {
                return Err(StoreError::unavailable(format!(
                    "the projection is more than {} s behind the event log",
                    self.connections.timeout().as_secs()
                )));
            }
            // The projection of this node wakes the wait as soon as it moves; another node's
            // is polled, less and less often.
            let _ = tokio::time::timeout(pause, changed.changed()).await;
            pause = (pause * 2).min(Duration::from_millis(20));
            applied = if self.log.leading() {
                changed.borrow_and_update().clone()
            } else {
                on_connection!(self, deadline, |c| log::watermarks(c))?
            };
        }
        Ok(())
    }

    /// Waits, at most [`log::APPEND_WAIT`], until the log is less than [`log::MAX_LAG`]
    /// entries ahead of the projection; past it, ingest sheds load.
    async fn wait_room(&self) -> Result<()> {
        let deadline = tokio::time::Instant::now() + log::APPEND_WAIT;
        loop {
            let (appended, applied) = on_connection!(self, |c| log::marks(c))?;
            if appended - applied < log::MAX_LAG {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(StoreError::unavailable(format!(
                    "the projection is {} events behind the event log; retry shortly",
                    appended - applied
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Applies pending migrations only; returns the versions applied.
    pub async fn migrate(url: &str) -> Result<Vec<i64>> {
        let connections = connect::Connections::open(url, 1, DEFAULT_TIMEOUT)?;
        let now = Clock::system().now().as_millisecond();
        let applied = migrate::run(&mut **connections.get(connections.deadline()).await?, now).await?;
        Ok(applied)
    }
}

/// Takes the lock that makes planned writes run one at a time across nodes; it is released
/// when the transaction ends.
pub(crate) async fn lock_contacts(tx: &impl GenericClient) -> Result<()> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&CONTACTS_LOCK]).await?;
    Ok(())
}

#[async_trait]
impl Store for PostgresStore {
    fn clock(&self) -> Clock {
        self.clock.clone()
    }

    async fn create_workspace(&self, name: &str) -> Result<Workspace> {
        on_connection!(self, |c| admin::create_workspace(c, name, self.now()))
    }

    async fn workspaces(&self) -> Result<Vec<Workspace>> {
        on_connection!(self, |c| admin::workspaces(c))
    }

    async fn workspace(&self, id: WorkspaceId) -> Result<Option<Workspace>> {
        on_connection!(self, |c| admin::workspace(c, id))
    }

    async fn update_workspace(&self, id: WorkspaceId, patch: WorkspacePatch) -> Result<Workspace> {
        self.wait_applied().await?;
        on_connection!(self, |c| admin::update_workspace(c, id, patch, self.now()))
    }

    async fn signing_secret(&self, id: WorkspaceId) -> Result<Option<String>> {
        on_connection!(self, |c| admin::signing_secret(c, id))
    }

    async fn create_key(&self, workspace: WorkspaceId, kind: KeyKind, name: &str, key: &str) -> Result<ApiKey> {
        on_connection!(self, |c| admin::create_key(c, workspace, kind, name, key, self.now()))
    }

    async fn find_key(&self, hash: [u8; 32]) -> Result<Option<ApiKey>> {
        on_connection!(self, |c| admin::find_key(c, &hash))
    }

    async fn keys(&self, workspace: WorkspaceId) -> Result<Vec<ApiKey>> {
        on_connection!(self, |c| admin::keys(c, workspace))
    }

    async fn revoke_key(&self, workspace: WorkspaceId, id: i64) -> Result<bool> {
        on_connection!(self, |c| admin::revoke_key(c, workspace, id, self.now()))
    }

    async fn write_events(&self, batch: Vec<Incoming>) -> Result<Vec<Outcome>> {
        self.wait_room().await?;
        if batch.iter().any(|incoming| crate::plan::needs_known_user(&incoming.event)) {
            // Whether it names a known user depends on every event acknowledged before it.
            self.wait_applied().await?;
        }
        let outcomes = on_connection!(self, |c| async {
            self.partitions.prepare(c, &batch).await?;
            log::append(c, &batch).await
        })?;
        self.log.appended();
        Ok(outcomes)
    }

    fn report_applied(&self, sink: crate::AppliedSink) {
        self.log.report_to(sink);
    }

    async fn settle(&self) -> Result<()> {
        self.wait_applied().await?;
        // What `log_position` tells (`/metrics`) is then as of now.
        let marks = on_connection!(self, |c| log::marks(c))?;
        self.log.saw(marks);
        Ok(())
    }

    fn log_position(&self) -> Option<crate::LogPosition> {
        Some(self.log.position())
    }

    async fn preview(&self, workspace: WorkspaceId, event: Event) -> Result<Preview> {
        self.wait_applied().await?;
        on_connection!(self, |c| write::preview(c, workspace, event))
    }

    async fn expire_pending(&self, now: Timestamp) -> Result<u64> {
        self.wait_applied().await?;
        on_connection!(self, |c| write::expire_pending(c, now.as_millisecond()))
    }

    async fn contacts(&self, workspace: WorkspaceId, query: ContactQuery) -> Result<Page<Contact>> {
        self.wait_applied().await?;
        on_connection!(self, |c| read::contacts(c, workspace, &query))
    }

    async fn contact(&self, workspace: WorkspaceId, key: ContactKey) -> Result<Option<Contact>> {
        self.wait_applied().await?;
        on_connection!(self, |c| read::contact(c, workspace, &key))
    }

    async fn identities(&self, workspace: WorkspaceId, contact: ContactId) -> Result<Vec<Identity>> {
        self.wait_applied().await?;
        on_connection!(self, |c| read::identities(c, workspace, contact))
    }

    async fn timeline(
        &self,
        workspace: WorkspaceId,
        contact: ContactId,
        cursor: Option<Cursor>,
        limit: usize,
    ) -> Result<Page<Interaction>> {
        self.wait_applied().await?;
        on_connection!(self, |c| read::timeline(c, workspace, contact, cursor.as_ref(), limit))
    }

    async fn events(
        &self,
        workspace: WorkspaceId,
        contact: ContactId,
        cursor: Option<Cursor>,
        limit: usize,
    ) -> Result<Page<StoredEvent>> {
        self.wait_applied().await?;
        on_connection!(self, |c| read::events(c, workspace, contact, cursor.as_ref(), limit))
    }

    async fn identify_payloads(
        &self,
        workspace: WorkspaceId,
        contact: ContactId,
        until: Timestamp,
    ) -> Result<Vec<String>> {
        self.wait_applied().await?;
        on_connection!(self, |c| read::identify_payloads(c, workspace, contact, until.as_millisecond()))
    }

    async fn add_interaction(
        &self,
        workspace: WorkspaceId,
        contact: ContactId,
        interaction: NewInteraction,
    ) -> Result<Interaction> {
        self.wait_applied().await?;
        on_connection!(self, |c| write::add_interaction(c, workspace, contact, interaction, self.now()))
    }

    async fn delete_contact(&self, workspace: WorkspaceId, contact: ContactId, suppress: bool) -> Result<bool> {
        self.wait_applied().await?;
        on_connection!(self, |c| write::delete_contact(c, workspace, contact, suppress, self.now()))
    }

    async fn merge_contacts(&self, workspace: WorkspaceId, into: ContactId, from: ContactId) -> Result<Contact> {
        self.wait_applied().await?;
        on_connection!(self, |c| write::merge_contacts(c, workspace, into, from, self.now()))
    }

    async fn set_cadence(&self, workspace: WorkspaceId, contact: ContactId, days: Option<i64>) -> Result<Contact> {
        self.wait_applied().await?;
        on_connection!(self, |c| write::set_cadence(c, workspace, contact, days, self.now()))
    }

    async fn alias_conflicts(&self, workspace: WorkspaceId) -> Result<Vec<AliasConflictRecord>> {
        self.wait_applied().await?;
        on_connection!(self, |c| read::alias_conflicts(c, workspace))
    }

    async fn request_reprojection(&self, workspace: WorkspaceId, reason: &str) -> Result<Reprojection> {
        self.wait_applied().await?;
        on_connection!(self, |c| reproject::request_and_status(c, workspace, reason, self.now()))
    }

    async fn reprojection(&self, workspace: WorkspaceId) -> Result<Option<Reprojection>> {
        on_connection!(self, |c| reproject::status(c, workspace))
    }

    async fn reproject_step(&self, contacts: usize) -> Result<Option<ReprojectionStep>> {
        self.wait_applied().await?;
        on_connection!(self, |c| reproject::step(c, contacts, self.now()))
    }

    async fn accounts(&self, workspace: WorkspaceId, limit: usize) -> Result<Vec<Account>> {
        self.wait_applied().await?;
        on_connection!(self, |c| read::accounts(c, workspace, None, limit))
    }

    async fn account(&self, workspace: WorkspaceId, group_id: &str) -> Result<Option<Account>> {
        self.wait_applied().await?;
        Ok(on_connection!(self, |c| read::accounts(c, workspace, Some(group_id), 1))?.pop())
    }

    async fn contact_accounts(&self, workspace: WorkspaceId, contact: ContactId) -> Result<Vec<Account>> {
        self.wait_applied().await?;
        on_connection!(self, |c| read::contact_accounts(c, workspace, contact))
    }

    async fn audiences(&self, workspace: WorkspaceId) -> Result<Vec<Audience>> {
        self.wait_applied().await?;
        on_connection!(self, |c| read::audiences(c, workspace, None))
    }

    async fn audience(&self, workspace: WorkspaceId, key: &str) -> Result<Option<Audience>> {
        self.wait_applied().await?;
        Ok(on_connection!(self, |c| read::audiences(c, workspace, Some(key)))?.pop())
    }

    async fn contact_audiences(&self, workspace: WorkspaceId, contact: ContactId) -> Result<Vec<AudienceMembership>> {
        self.wait_applied().await?;
        on_connection!(self, |c| read::contact_audiences(c, workspace, contact))
    }

    async fn audience_history(
        &self,
        workspace: WorkspaceId,
        audience: Option<&str>,
        contact: Option<ContactId>,
        limit: usize,
    ) -> Result<Vec<AudienceHistoryEntry>> {
        self.wait_applied().await?;
        on_connection!(self, |c| read::audience_history(c, workspace, audience, contact, limit))
    }

    async fn cadence_rules(&self, workspace: WorkspaceId) -> Result<Vec<CadenceRule>> {
        on_connection!(self, |c| read::cadence_rules(c, workspace))
    }

    async fn set_cadence_rule(
        &self,
        workspace: WorkspaceId,
        target: &str,
        key: &str,
        days: i64,
    ) -> Result<CadenceRule> {
        self.wait_applied().await?;
        on_connection!(self, |c| write::set_cadence_rule(c, workspace, target, key, days, self.now()))
    }

    async fn delete_cadence_rule(&self, workspace: WorkspaceId, id: i64) -> Result<bool> {
        self.wait_applied().await?;
        on_connection!(self, |c| write::delete_cadence_rule(c, workspace, id, self.now()))
    }

    async fn rules(&self, workspace: WorkspaceId) -> Result<Vec<Rule>> {
        on_connection!(self, |c| nudges::rules(c, workspace))
    }

    async fn rule(&self, workspace: WorkspaceId, id: i64) -> Result<Option<Rule>> {
        on_connection!(self, |c| nudges::rule(c, workspace, id))
    }

    async fn create_rule(&self, workspace: WorkspaceId, spec: RuleSpec) -> Result<Rule> {
        self.wait_applied().await?;
        on_connection!(self, |c| nudges::create_rule(c, workspace, &spec, self.now()))
    }

    async fn update_rule(&self, workspace: WorkspaceId, id: i64, spec: RuleSpec) -> Result<Option<Rule>> {
        self.wait_applied().await?;
        on_connection!(self, |c| nudges::update_rule(c, workspace, id, &spec, self.now()))
    }

    async fn delete_rule(&self, workspace: WorkspaceId, id: i64) -> Result<bool> {
        self.wait_applied().await?;
        on_connection!(self, |c| nudges::delete_rule(c, workspace, id, self.now()))
    }

    async fn firings(
        &self,
        workspace: WorkspaceId,
        rule: Option<i64>,
        contact: Option<ContactId>,
        limit: usize,
    ) -> Result<Vec<Firing>> {
        self.wait_applied().await?;
        on_connection!(self, |c| nudges::firings(c, workspace, rule, contact, limit))
    }

    async fn evaluate_contacts(&self, now: Timestamp) -> Result<JobReport> {
        self.wait_applied().await?;
        on_connection!(self, |c| nudges::evaluate_contacts(c, now))
    }

    async fn fire_due(&self, now: Timestamp, limit: usize) -> Result<JobReport> {
        self.wait_applied().await?;
        on_connection!(self, |c| nudges::fire_due(c, now, limit))
    }

    async fn journeys(&self, workspace: WorkspaceId) -> Result<Vec<Journey>> {
        on_connection!(self, |c| journeys::journeys(&*c, workspace))
    }

    async fn journey(&self, workspace: WorkspaceId, id: i64) -> Result<Option<Journey>> {
        on_connection!(self, |c| journeys::journey(&*c, workspace, id))
    }

    async fn create_journey(&self, workspace: WorkspaceId, spec: JourneySpec) -> Result<Journey> {
        self.wait_applied().await?;
        on_connection!(self, |c| journeys::create_journey(c, workspace, &spec, self.now()))
    }

    async fn update_journey(&self, workspace: WorkspaceId, id: i64, spec: JourneySpec) -> Result<Option<Journey>> {
        self.wait_applied().await?;
        on_connection!(self, |c| journeys::update_journey(c, workspace, id, &spec, self.now()))
    }

    async fn delete_journey(&self, workspace: WorkspaceId, id: i64) -> Result<bool> {
        self.wait_applied().await?;
        on_connection!(self, |c| journeys::delete_journey(c, workspace, id))
    }

    async fn advance_journeys(&self, now: Timestamp, limit: usize) -> Result<JourneyReport> {
        self.wait_applied().await?;
        on_connection!(self, |c| journeys::advance(c, now, limit))
    }

    async fn enter_account_members(
        &self,
        workspace: WorkspaceId,
        account: i64,
        starts: Vec<JourneyStart>,
    ) -> Result<usize> {
        self.wait_applied().await?;
        on_connection!(self, |c| journeys::enter_account_members(c, workspace, account, &starts))
    }

    async fn journey_counts(&self, workspace: WorkspaceId, journey: i64) -> Result<JourneyCounts> {
        self.wait_applied().await?;
        on_connection!(self, |c| journeys::counts(c, workspace, journey))
    }

    async fn journey_step_entries(
        &self,
        workspace: WorkspaceId,
        journey: i64,
        step: u32,
        limit: usize,
    ) -> Result<Vec<JourneyEntry>> {
        self.wait_applied().await?;
        on_connection!(self, |c| journeys::step_entries(c, workspace, journey, step, limit))
    }

    async fn contact_journeys(&self, workspace: WorkspaceId, contact: ContactId) -> Result<Vec<JourneyEntry>> {
        self.wait_applied().await?;
        on_connection!(self, |c| journeys::contact_journeys(c, workspace, contact))
    }

    async fn track_history(
        &self,
        workspace: WorkspaceId,
        since: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<TrackRecord>> {
        self.wait_applied().await?;
        let (since, until) = (since.as_millisecond(), until.as_millisecond());
        on_connection!(self, |c| journeys::track_history(c, workspace, since, until))
    }

    async fn audience_changes(
        &self,
        workspace: WorkspaceId,
        audience: &str,
        since: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<AudienceChange>> {
        self.wait_applied().await?;
        let (since, until) = (since.as_millisecond(), until.as_millisecond());
        on_connection!(self, |c| journeys::audience_changes(c, workspace, audience, since, until))
    }

    async fn interaction_history(&self, workspace: WorkspaceId, until: Timestamp) -> Result<Vec<InteractionRecord>> {
        self.wait_applied().await?;
        on_connection!(self, |c| journeys::interaction_history(c, workspace, until.as_millisecond()))
    }

    async fn cadences(&self, workspace: WorkspaceId) -> Result<Vec<ContactCadence>> {
        self.wait_applied().await?;
        on_connection!(self, |c| journeys::cadences(c, workspace))
    }

    async fn health_records(&self, workspace: WorkspaceId, since_day: i32) -> Result<Vec<HealthRecord>> {
        on_connection!(self, |c| health::health_records(c, workspace, since_day))
    }

    async fn account_memberships(&self, workspace: WorkspaceId) -> Result<Vec<(i64, ContactId)>> {
        self.wait_applied().await?;
        on_connection!(self, |c| health::account_memberships(c, workspace))
    }

    async fn enqueue(&self, workspace: WorkspaceId, deliveries: Vec<NewDelivery>, now: Timestamp) -> Result<()> {
        on_connection!(self, |c| nudges::enqueue(c, workspace, &deliveries, None, None, now.as_millisecond()))
    }

    async fn claim_deliveries(
        &self,
        now: Timestamp,
        limit: usize,
        lease: jiff::SignedDuration,
    ) -> Result<Vec<Delivery>> {
        on_connection!(self, |c| nudges::claim_deliveries(c, now, limit, lease.as_millis() as i64))
    }

    async fn finish_delivery(&self, id: i64, result: DeliveryResult, now: Timestamp) -> Result<()> {
        on_connection!(self, |c| nudges::finish_delivery(c, id, &result, now))
    }

    async fn apply_to_contact(
        &self,
        delivery: i64,
        workspace: WorkspaceId,
        contact: ContactId,
        change: StepChange,
        now: Timestamp,
    ) -> Result<bool> {
        self.wait_applied().await?;
        on_connection!(self, |c| write::apply_to_contact(c, delivery, workspace, contact, change, now))
    }

    async fn deliveries(
        &self,
        workspace: WorkspaceId,
        status: Option<&str>,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Delivery>> {
        on_connection!(self, |c| nudges::deliveries(c, workspace, status, before, limit))
    }

    async fn retry_delivery(&self, workspace: WorkspaceId, id: i64, now: Timestamp) -> Result<bool> {
        on_connection!(self, |c| nudges::retry_delivery(c, workspace, id, now))
    }

    async fn segment_destination(&self, workspace: WorkspaceId) -> Result<Option<(String, String)>> {
        on_connection!(self, |c| admin::segment_destination(c, workspace))
    }

    async fn claim_digest(&self, workspace: WorkspaceId, day: i32) -> Result<bool> {
        on_connection!(self, |c| admin::claim_digest(c, workspace, day))
    }

    async fn health_model(&self, workspace: WorkspaceId) -> Result<Option<String>> {
        on_connection!(self, |c| health::health_model(c, workspace))
    }

    async fn set_health_model(&self, workspace: WorkspaceId, model: &str) -> Result<()> {
        on_connection!(self, |c| health::set_health_model(c, workspace, model, self.now()))
    }

    async fn account_rating(&self, workspace: WorkspaceId, account: i64) -> Result<Option<i64>> {
        on_connection!(self, |c| health::account_rating(c, workspace, account))
    }

    async fn set_account_rating(&self, workspace: WorkspaceId, account: i64, rating: Option<i64>) -> Result<()> {
        on_connection!(self, |c| health::set_account_rating(c, workspace, account, rating, self.now()))
    }

    async fn member_event_counts(
        &self,
        workspace: WorkspaceId,
        account: i64,
        since_ms: i64,
        until_ms: i64,
        event: Option<&str>,
    ) -> Result<MemberEventCounts> {
        self.wait_applied().await?;
        on_connection!(self, |c| health::member_event_counts(c, workspace, account, since_ms, until_ms, event))
    }

    async fn record_health(&self, workspace: WorkspaceId, record: HealthRecord) -> Result<()> {
        on_connection!(self, |c| health::record_health(c, workspace, &record))
    }

    async fn health_history(&self, workspace: WorkspaceId, account: i64, limit: usize) -> Result<Vec<HealthRecord>> {
        on_connection!(self, |c| health::health_history(c, workspace, account, limit))
    }

    async fn observe_health(
        &self,
        workspace: WorkspaceId,
        account: i64,
        observation: HealthObservation,
    ) -> Result<Option<HealthObservation>> {
        on_connection!(self, |c| health::observe_health(c, workspace, account, &observation, self.now()))
    }

    async fn fire_for_account(
        &self,
        workspace: WorkspaceId,
        firing: NewAccountFiring,
        deliveries: Vec<NewDelivery>,
    ) -> Result<bool> {
        on_connection!(self, |c| health::fire_for_account(c, workspace, &firing, &deliveries, self.now()))
    }

    async fn account_firings(
        &self,
        workspace: WorkspaceId,
        rule: Option<i64>,
        account: Option<i64>,
        limit: usize,
    ) -> Result<Vec<AccountFiring>> {
        on_connection!(self, |c| health::account_firings(c, workspace, rule, account, limit))
    }

    async fn set_owner(&self, workspace: WorkspaceId, subject: OwnerSubject, id: i64, user: Option<i64>) -> Result<()> {
        on_connection!(self, |c| owners::set_owner(c, workspace, subject, id, user, self.now()))
    }

    async fn owners(&self, workspace: WorkspaceId, subject: OwnerSubject) -> Result<Vec<(i64, i64)>> {
        on_connection!(self, |c| owners::owners(c, workspace, subject))
    }

    async fn owner(&self, workspace: WorkspaceId, subject: OwnerSubject, id: i64) -> Result<Option<i64>> {
        on_connection!(self, |c| owners::owner(c, workspace, subject, id))
    }

    async fn create_task(&self, workspace: WorkspaceId, spec: TaskSpec) -> Result<Task> {
        on_connection!(self, |c| owners::create_task(c, workspace, &spec, self.now()))
    }

    async fn task(&self, workspace: WorkspaceId, id: i64) -> Result<Option<Task>> {
        on_connection!(self, |c| owners::task(c, workspace, id))
    }

    async fn tasks(&self, workspace: WorkspaceId, query: TaskQuery) -> Result<Vec<Task>> {
        on_connection!(self, |c| owners::tasks(c, workspace, &query))
    }

    async fn update_task(&self, workspace: WorkspaceId, id: i64, spec: TaskSpec) -> Result<Option<Task>> {
        on_connection!(self, |c| owners::update_task(c, workspace, id, &spec, self.now()))
    }

    async fn set_task_done(&self, workspace: WorkspaceId, id: i64, done: bool) -> Result<Option<Task>> {
        on_connection!(self, |c| owners::set_task_done(c, workspace, id, done, self.now()))
    }

    async fn delete_task(&self, workspace: WorkspaceId, id: i64) -> Result<bool> {
        on_connection!(self, |c| owners::delete_task(c, workspace, id))
    }

    async fn claim_owner_digest(&self, user: i64, day: i32) -> Result<bool> {
        on_connection!(self, |c| owners::claim_owner_digest(c, user, day))
    }

    async fn create_user(&self, workspace: WorkspaceId, email: &str, password_hash: &str) -> Result<User> {
        on_connection!(self, |c| users::create_user(c, workspace, email, password_hash, self.now()))
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        on_connection!(self, |c| users::user_by_email(c, email))
    }

    async fn user_count(&self) -> Result<i64> {
        on_connection!(self, |c| users::user_count(c))
    }

    async fn users(&self, workspace: WorkspaceId) -> Result<Vec<User>> {
        on_connection!(self, |c| users::users(c, workspace))
    }

    async fn create_session(&self, user: i64, token_hash: [u8; 32], expires_at: Timestamp) -> Result<()> {
        on_connection!(self, |c| users::create_session(c, user, &token_hash, expires_at, self.now()))
    }

    async fn session(&self, token_hash: [u8; 32], now: Timestamp) -> Result<Option<Session>> {
        on_connection!(self, |c| users::session(c, &token_hash, now))
    }

    async fn delete_session(&self, token_hash: [u8; 32]) -> Result<()> {
        on_connection!(self, |c| users::delete_session(c, &token_hash))
    }

    async fn touch_session(&self, token_hash: [u8; 32], at: Timestamp) -> Result<()> {
        on_connection!(self, |c| users::touch_session(c, &token_hash, at))
    }

    async fn set_password(&self, user: i64, password_hash: &str) -> Result<()> {
        on_connection!(self, |c| users::set_password(c, user, password_hash))
    }

    async fn delete_user(&self, user: i64) -> Result<()> {
        on_connection!(self, |c| users::delete_user(c, user))
    }

    async fn topics(&self, workspace: WorkspaceId) -> Result<Vec<Topic>> {
        on_connection!(self, |c| messages::topics(c, workspace))
    }

    async fn create_topic(&self, workspace: WorkspaceId, name: &str, opt_in: bool) -> Result<Topic> {
        on_connection!(self, |c| messages::create_topic(c, workspace, name, opt_in, self.now()))
    }

    async fn update_topic(&self, workspace: WorkspaceId, id: i64, name: &str, opt_in: bool) -> Result<Option<Topic>> {
        on_connection!(self, |c| messages::update_topic(c, workspace, id, name, opt_in))
    }

    async fn delete_topic(&self, workspace: WorkspaceId, id: i64) -> Result<bool> {
        on_connection!(self, |c| messages::delete_topic(c, workspace, id))
    }

    async fn templates(&self, workspace: WorkspaceId) -> Result<Vec<Template>> {
        on_connection!(self, |c| messages::templates(c, workspace))
    }

    async fn template(&self, workspace: WorkspaceId, id: i64) -> Result<Option<Template>> {
        on_connection!(self, |c| messages::template(c, workspace, id))
    }

    async fn create_template(&self, workspace: WorkspaceId, spec: TemplateSpec) -> Result<Template> {
        on_connection!(self, |c| messages::create_template(c, workspace, &spec, self.now()))
    }

    async fn update_template(&self, workspace: WorkspaceId, id: i64, spec: TemplateSpec) -> Result<Option<Template>> {
        on_connection!(self, |c| messages::update_template(c, workspace, id, &spec, self.now()))
    }

    async fn delete_template(&self, workspace: WorkspaceId, id: i64) -> Result<bool> {
        on_connection!(self, |c| messages::delete_template(c, workspace, id))
    }

    async fn sender(&self, workspace: WorkspaceId, new_secret: &str) -> Result<Sender> {
        on_connection!(self, |c| messages::sender(c, workspace, new_secret))
    }

    async fn set_sender(&self, workspace: WorkspaceId, sender: Sender) -> Result<Sender> {
        on_connection!(self, |c| messages::set_sender(c, workspace, &sender))
    }

    async fn message_limits(&self, workspace: WorkspaceId) -> Result<MessageLimits> {
        on_connection!(self, |c| messages::message_limits(c, workspace))
    }

    async fn set_message_limits(&self, workspace: WorkspaceId, limits: MessageLimits) -> Result<()> {
        on_connection!(self, |c| messages::set_message_limits(c, workspace, &limits))
    }

    async fn messages_sent_since(&self, workspace: WorkspaceId, contact: ContactId, since: Timestamp) -> Result<i64> {
        on_connection!(self, |c| messages::messages_sent_since(c, workspace, contact, since))
    }

    async fn subscriptions(&self, workspace: WorkspaceId, contact: ContactId) -> Result<Vec<Subscription>> {
        on_connection!(self, |c| messages::subscriptions(c, workspace, contact))
    }

    async fn set_subscription(
        &self,
        workspace: WorkspaceId,
        contact: ContactId,
        topic: i64,
        subscribed: bool,
        at: Timestamp,
    ) -> Result<()> {
        on_connection!(self, |c| messages::set_subscription(c, workspace, contact, topic, subscribed, at))
    }

    async fn firing_event(&self, workspace: WorkspaceId, firing: i64) -> Result<Option<String>> {
        self.wait_applied().await?;
        on_connection!(self, |c| messages::firing_event(c, workspace, firing))
    }

    async fn is_suppressed(&self, workspace: WorkspaceId, email: &str) -> Result<bool> {
        self.wait_applied().await?;
        on_connection!(self, |c| messages::is_suppressed(c, workspace, email))
    }

    async fn record_message(&self, workspace: WorkspaceId, entry: NewMessageEntry) -> Result<()> {
        on_connection!(self, |c| messages::record_message(c, workspace, &entry))
    }

    async fn fail_held_message(
        &self,
        workspace: WorkspaceId,
        delivery: i64,
        reason: &str,
        at: Timestamp,
    ) -> Result<()> {
        on_connection!(self, |c| messages::fail_held_message(c, workspace, delivery, reason, at))
    }

    async fn message_log(&self, workspace: WorkspaceId, contact: ContactId, limit: usize) -> Result<Vec<MessageEntry>> {
        on_connection!(self, |c| messages::message_log(c, workspace, contact, limit))
    }

    async fn record_engagement(
        &self,
        workspace: WorkspaceId,
        email_id: &str,
        engagement: Engagement,
        at: Timestamp,
        limit: i64,
    ) -> Result<Option<MessageEntry>> {
        on_connection!(self, |c| messages::record_engagement(c, workspace, email_id, engagement, at, limit))
    }

    async fn record_unsubscribe(
        &self,
        workspace: WorkspaceId,
        contact: ContactId,
        topic: i64,
        at: Timestamp,
    ) -> Result<Option<MessageEntry>> {
        on_connection!(self, |c| messages::record_unsubscribe(c, workspace, contact, topic, at))
    }

    async fn record_bounce(
        &self,
        workspace: WorkspaceId,
        contact: ContactId,
        email: &str,
        reason: &str,
        at: Timestamp,
    ) -> Result<()> {
        on_connection!(self, |c| messages::record_bounce(c, workspace, contact, email, reason, at))
    }

    async fn is_bounced(&self, workspace: WorkspaceId, contact: ContactId, email: &str) -> Result<bool> {
        on_connection!(self, |c| messages::is_bounced(c, workspace, contact, email))
    }

    async fn has_track(&self, workspace: WorkspaceId, contact: ContactId, name: &str) -> Result<bool> {
        self.wait_applied().await?;
        on_connection!(self, |c| messages::has_track(c, workspace, contact, name))
    }

    async fn message_stats(&self, workspace: WorkspaceId, by: StatsBy) -> Result<Vec<(i64, MessageCounts)>> {
        on_connection!(self, |c| messages::message_stats(c, workspace, by))
    }

    async fn enqueue_track(
        &self,
        workspace: WorkspaceId,
        contact: ContactId,
        event: &str,
        properties: serde_json::Map<String, serde_json::Value>,
        at: Timestamp,
    ) -> Result<()> {
        on_connection!(self, |c| async {
            let Some(workspace) = admin::workspace(&*c, workspace).await? else { return Ok(()) };
            nudges::enqueue_track(&*c, &workspace, contact, event, properties, at.as_millisecond(), self.now()).await
        })
    }

    async fn ping(&self) -> Result<()> {
        on_connection!(self, self.connections.ping_deadline(), |c| async {
            c.execute("SELECT 1", &[]).await?;
            Ok(())
        })
    }
}

/// What a PostgreSQL error says: the server's message and SQLSTATE for an error the server
/// returned, else the error and its causes (the first alone says little, e.g. "db error").
pub(crate) fn explain(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => crate::error_chain(error),
    }
}
