//! The embedded SQLite backend: accepted events are appended to an event log (`log.rs`) and
//! applied to the main database by a projection; one write connection used by one writer at
//! a time (the projection, or an admin write) and a pool of read connections, which WAL lets
//! run beside the writer. Reads of what events derive wait for the projection to reach what
//! was acknowledged before them.

mod admin;
mod cache;
mod checkpoint;
mod crash;
mod dedup;
mod files;
mod handoff;
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

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use jiff::Timestamp;
use kith_core::journeys::JourneySpec;
use kith_core::rules::RuleSpec;
use kith_core::{Clock, Event};
use rusqlite::{Connection, OpenFlags};
use tokio::sync::Semaphore;

use crate::journeys::JourneyStart;
use crate::records::*;
use crate::{Result, Store, StoreError};

pub use migrate::MIGRATIONS;

/// How hard a commit tries to reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// `synchronous=FULL`: a commit is fsynced; nothing acknowledged is lost even if the
    /// machine loses power.
    #[default]
    Full,
    /// `synchronous=NORMAL`: a commit survives the process being killed, not a power cut.
    Normal,
}

impl Durability {
    /// The `PRAGMA synchronous` value it stands for, for every file of the store.
    fn synchronous(self) -> &'static str {
        match self {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        }
    }
}

/// Options for opening the database.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// The database file.
    pub path: PathBuf,
    /// Commit durability.
    pub durability: Durability,
    /// Read connections.
    pub readers: usize,
    /// Page cache of the write connection, in MiB.
    pub cache_mib: i64,
    /// Where every time the store stamps comes from.
    pub clock: Clock,
}

impl SqliteOptions {
    /// Defaults for a database file.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SqliteOptions {
            path: path.into(),
            durability: Durability::Full,
            readers: 4,
            cache_mib: 64,
            clock: Clock::system(),
        }
    }
}

/// The SQLite store.
#[derive(Clone)]
pub struct SqliteStore {
    writer: Arc<Mutex<Writer>>,
    readers: Arc<ReadPool>,
    log: Arc<EventLog>,
    clock: Clock,
}

/// The event log's appender and the projection's progress. Dropping the last store handle
/// lets the projection finish what is appended and stop.
struct EventLog {
    appender: Mutex<log::Appender>,
    progress: Arc<log::Progress>,
    sink: log::SinkSlot,
}

impl Drop for EventLog {
    fn drop(&mut self) {
        log::close(&self.progress);
    }
}

/// The one write connection and what the ingest path remembers between batches.
struct Writer {
    connection: Connection,
    cache: cache::WriterCache,
}

struct ReadPool {
    connections: Mutex<Vec<Connection>>,
    available: Semaphore,
}

impl SqliteStore {
    /// The store's time, in milliseconds since the epoch.
    fn now(&self) -> i64 {
        self.clock.now().as_millisecond()
    }

    /// Opens (creating if needed) and migrates the database.
    pub fn open(options: &SqliteOptions) -> Result<Self> {
        files::prepare(&options.path)?;
        let mut writer = Connection::open(&options.path)?;
        configure_writer(&writer, options)?;
        migrate::run(&mut writer, options.clock.now().as_millisecond())?;
        let readers = (0..options.readers.max(1)).map(|_| open_reader(&options.path)).collect::<Result<Vec<_>>>()?;
        let writer = Arc::new(Mutex::new(Writer { connection: writer, cache: cache::WriterCache::default() }));
        // The projection and checkpoint threads end by themselves once the store is dropped
        // (and the log applied).
        let sink = log::SinkSlot::default();
        let (appender, progress, _projection) =
            log::open(&options.path, options.durability, writer.clone(), sink.clone(), &options.clock)?;
        checkpoint::start(&log::log_path(&options.path), &options.path, progress.clone())?;
        Ok(SqliteStore {
            writer,
            readers: Arc::new(ReadPool { available: Semaphore::new(readers.len()), connections: Mutex::new(readers) }),
            log: Arc::new(EventLog { appender: Mutex::new(appender), progress, sink }),
            clock: options.clock.clone(),
        })
    }

    /// Applies pending migrations only; returns the versions applied.
    pub fn migrate(path: &Path) -> Result<Vec<i64>> {
        files::prepare(path)?;
        let mut connection = Connection::open(path)?;
        configure_writer(&connection, &SqliteOptions::new(path))?;
        migrate::run(&mut connection, Clock::system().now().as_millisecond())
    }

    /// Runs `f` with the writer, off the async threads.
    async fn with_writer<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Writer) -> Result<T> + Send + 'static,
    {
        let writer = self.writer.clone();
        tokio::task::spawn_blocking(move || {
            let mut writer = writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&mut writer)
        })
        .await
        .map_err(|e| StoreError::caused("writer task failed", e))?
    }

    /// Runs `f` on the write connection for a write that leaves contacts, identities and
    /// interactions alone (keys, rules, the outbox…): the ingest cache stays valid.
    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        self.with_writer(move |writer| f(&mut writer.connection)).await
    }

    /// Runs `f` on the write connection once the projection has applied every event
    /// acknowledged before the call, for jobs that act on what events derive and for rule
    /// changes (which apply to events after them, not to those acknowledged before); the
    /// ingest cache stays valid.
    async fn write_fresh<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        self.log.progress.wait_applied().await?;
        self.write(f).await
    }

    /// Runs `f` on the write connection for a write that changes contacts, identities or
    /// interactions outside the ingest path, once the projection has applied every event
    /// acknowledged before: the ingest cache is cleared.
    async fn write_contacts<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        self.log.progress.wait_applied().await?;
        self.with_writer(move |writer| {
            writer.cache.clear();
            f(&mut writer.connection)
        })
        .await
    }

    /// Runs `f` on a read connection once the projection has applied every event
    /// acknowledged before the call: for reads of what events derive.
    async fn read_fresh<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.log.progress.wait_applied().await?;
        self.read(f).await
    }

    /// Empties what still holds copies of erased rows once they are deleted (secure_delete
    /// zeroed them in their pages): the main write-ahead file, and the event log's applied
    /// entries (their digests sealed first) with its write-ahead file.
    async fn scrub(&self) -> Result<()> {
        self.with_writer(|writer| checkpoint::truncate(&writer.connection)).await?;
        let log = self.log.clone();
        tokio::task::spawn_blocking(move || {
            log.appender.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).prune(&log.progress)
        })
        .await
        .map_err(|e| StoreError::caused("log task failed", e))?
    }

    /// Runs `f` on a read connection, off the async threads.
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let pool = self.readers.clone();
        let _permit = pool.available.acquire().await.map_err(|_| StoreError::unavailable("the read pool is closed"))?;
        let connection = pool
            .connections
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop()
            .ok_or_else(|| StoreError::unavailable("no read connection free"))?;
        let (connection, result) = tokio::task::spawn_blocking(move || {
            let result = f(&connection);
            (connection, result)
        })
        .await
        .map_err(|e| StoreError::caused("reader task failed", e))?;
        pool.connections.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(connection);
        result
    }
}

/// Prepared statements each connection keeps. rusqlite keeps 16 by default, fewer than the
/// writer uses per batch, so most `prepare_cached` calls compiled their SQL again (a fifth of
/// the writer's CPU under single identifies).
const STATEMENT_CACHE: usize = 256;

fn configure_writer(connection: &Connection, options: &SqliteOptions) -> Result<()> {
    connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    let synchronous = options.durability.synchronous();
    connection.execute_batch(&format!(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = {synchronous};
         PRAGMA busy_timeout = 10000;
         PRAGMA cache_size = -{cache_kib};
         PRAGMA temp_store = MEMORY;
         PRAGMA wal_autocheckpoint = 0;
         PRAGMA foreign_keys = OFF;
         PRAGMA secure_delete = ON;",
        cache_kib = options.cache_mib * 1024,
    ))?;
    Ok(())
}

fn open_reader(path: &Path) -> Result<Connection> {
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
    )?;
    connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // 4 MiB each: the reads kith bounds stay under a millisecond from the operating system's
    // cache, and four readers at 8 MiB put the peak of a 1,000,000-identify sync over 300 MB.
    connection.execute_batch(
        "PRAGMA busy_timeout = 10000;
         PRAGMA cache_size = -4096;",
    )?;
    Ok(connection)
}

#[async_trait]
impl Store for SqliteStore {
    fn clock(&self) -> Clock {
        self.clock.clone()
    }

    async fn create_workspace(&self, name: &str) -> Result<Workspace> {
        let now = self.now();
        let name = name.to_owned();
        self.write(move |c| admin::create_workspace(c, &name, now)).await
    }

    async fn workspaces(&self) -> Result<Vec<Workspace>> {
        self.read(admin::workspaces).await
    }

    async fn workspace(&self, id: WorkspaceId) -> Result<Option<Workspace>> {
        self.read(move |c| admin::workspace(c, id)).await
    }

    async fn update_workspace(&self, id: WorkspaceId, patch: WorkspacePatch) -> Result<Workspace> {
        let now = self.now();
        self.write_contacts(move |c| admin::update_workspace(c, id, patch, now)).await
    }

    async fn signing_secret(&self, id: WorkspaceId) -> Result<Option<String>> {
        self.read(move |c| admin::signing_secret(c, id)).await
    }

    async fn create_key(&self, workspace: WorkspaceId, kind: KeyKind, name: &str, key: &str) -> Result<ApiKey> {
        let now = self.now();
        let (name, key) = (name.to_owned(), key.to_owned());
        self.write(move |c| admin::create_key(c, workspace, kind, &name, &key, now)).await
    }

    async fn find_key(&self, hash: [u8; 32]) -> Result<Option<ApiKey>> {
        self.read(move |c| admin::find_key(c, &hash)).await
    }

    async fn keys(&self, workspace: WorkspaceId) -> Result<Vec<ApiKey>> {
        self.read(move |c| admin::keys(c, workspace)).await
    }

    async fn revoke_key(&self, workspace: WorkspaceId, id: i64) -> Result<bool> {
        let now = self.now();
        self.write(move |c| admin::revoke_key(c, workspace, id, now)).await
    }

    async fn write_events(&self, batch: Vec<Incoming>) -> Result<Vec<Outcome>> {
        let erases = batch.iter().any(|incoming| matches!(incoming.event.kind, kith_core::EventKind::Delete));
        let log = self.log.clone();
        let result = tokio::task::spawn_blocking(move || {
            let mut appender = log.appender.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            appender.append(&log.progress, batch)
        })
        .await
        .map_err(|e| StoreError::caused("log task failed", e))?;
        if erases && result.is_ok() {
            // A Segment deletion is applied by the projection: once it is, scrub the files as
            // an erasure through the API does, without holding up this acknowledgement.
            let store = self.clone();
            tokio::spawn(async move {
                let scrubbed = async {
                    store.log.progress.wait_applied().await?;
                    store.scrub().await
                };
                if let Err(error) = scrubbed.await {
                    tracing::warn!(%error, "the files could not be scrubbed after a deletion");
                }
            });
        }
        result
    }

    fn report_applied(&self, sink: crate::AppliedSink) {
        *self.log.sink.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(sink);
    }

    async fn settle(&self) -> Result<()> {
        self.log.progress.wait_applied().await
    }

    fn log_position(&self) -> Option<crate::LogPosition> {
        Some(self.log.progress.position())
    }

    async fn preview(&self, workspace: WorkspaceId, event: Event) -> Result<Preview> {
        let incoming = Incoming::new(workspace, event);
        let (log, digest) = (self.log.clone(), incoming.digest);
        let seen = tokio::task::spawn_blocking(move || {
            log.appender.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).seen(&digest)
        })
        .await
        .map_err(|e| StoreError::caused("log task failed", e))??;
        self.read_fresh(move |c| write::preview(c, incoming, seen)).await
    }

    async fn expire_pending(&self, now: Timestamp) -> Result<u64> {
        self.write_fresh(move |c| write::expire_pending(c, now.as_millisecond())).await
    }

    async fn contacts(&self, workspace: WorkspaceId, query: ContactQuery) -> Result<Page<Contact>> {
        self.read_fresh(move |c| read::contacts(c, workspace, &query)).await
    }

    async fn contact(&self, workspace: WorkspaceId, key: ContactKey) -> Result<Option<Contact>> {
        self.read_fresh(move |c| read::contact(c, workspace, &key)).await
    }

    async fn identities(&self, workspace: WorkspaceId, contact: ContactId) -> Result<Vec<Identity>> {
        self.read_fresh(move |c| read::identities(c, workspace, contact)).await
    }

    async fn timeline(
        &self,
        workspace: WorkspaceId,
        contact: ContactId,
        cursor: Option<Cursor>,
        limit: usize,
    ) -> Result<Page<Interaction>> {
        self.read_fresh(move |c| read::timeline(c, workspace, contact, cursor.as_ref(), limit)).await
    }

    async fn events(
        &self,
        workspace: WorkspaceId,
        contact: ContactId,
        cursor: Option<Cursor>,
        limit: usize,
    ) -> Result<Page<StoredEvent>> {
        self.read_fresh(move |c| read::events(c, workspace, contact, cursor.as_ref(), limit)).await
    }

    async fn identify_payloads(
        &self,
        workspace: WorkspaceId,
        contact: ContactId,
        until: Timestamp,
    ) -> Result<Vec<String>> {
        self.read_fresh(move |c| read::identify_payloads(c, workspace, contact, until.as_millisecond())).await
    }

    async fn add_interaction(
        &self,
        workspace: WorkspaceId,
        contact: ContactId,
        interaction: NewInteraction,
    ) -> Result<Interaction> {
        let now = self.now();
        self.write_contacts(move |c| write::add_interaction(c, workspace, contact, interaction, now)).await
    }

    async fn delete_contact(&self, workspace: WorkspaceId, contact: ContactId, suppress: bool) -> Result<bool> {
        let now = self.now();
        let deleted = self
            .write_contacts(move |c| {
                let tx = c.transaction()?;
                let deleted = write::delete_contact(&tx, workspace, contact, suppress, now)?;
                tx.commit()?;
                Ok(deleted)
            })
            .await?;
        self.scrub().await?;
        Ok(deleted)
    }

    async fn merge_contacts(&self, workspace: WorkspaceId, into: ContactId, from: ContactId) -> Result<Contact> {
        let now = self.now();
        self.write_contacts(move |c| write::merge_contacts(c, workspace, into, from, now)).await
    }

    async fn set_cadence(&self, workspace: WorkspaceId, contact: ContactId, days: Option<i64>) -> Result<Contact> {
        let now = self.now();
        self.write_contacts(move |c| write::set_cadence(c, workspace, contact, days, now)).await
    }

    async fn request_reprojection(&self, workspace: WorkspaceId, reason: &str) -> Result<Reprojection> {
        let (now, reason) = (self.now(), reason.to_owned());
        self.write_fresh(move |c| {
            reproject::request(c, workspace, &reason, now)?;
            reproject::status(c, workspace)?.ok_or_else(|| StoreError::NotFound(format!("workspace {workspace}")))
        })
        .await
    }

    async fn reprojection(&self, workspace: WorkspaceId) -> Result<Option<Reprojection>> {
        self.read(move |c| reproject::status(c, workspace)).await
    }

    async fn reproject_step(&self, contacts: usize) -> Result<Option<ReprojectionStep>> {
        let now = self.now();
        self.write_contacts(move |c| reproject::step(c, contacts, now)).await
    }

    async fn alias_conflicts(&self, workspace: WorkspaceId) -> Result<Vec<AliasConflictRecord>> {
        self.read_fresh(move |c| read::alias_conflicts(c, workspace)).await
    }

    async fn accounts(&self, workspace: WorkspaceId, limit: usize) -> Result<Vec<Account>> {
        self.read_fresh(move |c| read::accounts(c, workspace, None, limit)).await
    }

    async fn account(&self, workspace: WorkspaceId, group_id: &str) -> Result<Option<Account>> {
        let group_id = group_id.to_owned();
        self.read_fresh(move |c| Ok(read::accounts(c, workspace, Some(&group_id), 1)?.pop())).await
    }

    async fn contact_accounts(&self, workspace: WorkspaceId, contact: ContactId) -> Result<Vec<Account>> {
        self.read_fresh(move |c| read::contact_accounts(c, workspace, contact)).await
    }

    async fn audiences(&self, workspace: WorkspaceId) -> Result<Vec<Audience>> {
        self.read_fresh(move |c| read::audiences(c, workspace, None)).await
    }

    async fn audience(&self, workspace: WorkspaceId, key: &str) -> Result<Option<Audience>> {
        let key = key.to_owned();
        self.read_fresh(move |c| Ok(read::audiences(c, workspace, Some(&key))?.pop())).await
    }

    async fn contact_audiences(&self, workspace: WorkspaceId, contact: ContactId) -> Result<Vec<AudienceMembership>> {
        self.read_fresh(move |c| read::contact_audiences(c, workspace, contact)).await
    }

    async fn audience_history(
        &self,
        workspace: WorkspaceId,
        audience: Option<&str>,
        contact: Option<ContactId>,
        limit: usize,
    ) -> Result<Vec<AudienceHistoryEntry>> {
        let audience = audience.map(str::to_owned);
        self.read_fresh(move |c| read::audience_history(c, workspace, audience.as_deref(), contact, limit)).await
    }

    async fn cadence_rules(&self, workspace: WorkspaceId) -> Result<Vec<CadenceRule>> {
        self.read(move |c| read::cadence_rules(c, workspace)).await
    }

    async fn set_cadence_rule(
        &self,
        workspace: WorkspaceId,
        target: &str,
        key: &str,
        days: i64,
    ) -> Result<CadenceRule> {
        let now = self.now();
        let (target, key) = (target.to_owned(), key.to_owned());
        self.write_contacts(move |c| write::set_cadence_rule(c, workspace, &target, &key, days, now)).await
    }

    async fn delete_cadence_rule(&self, workspace: WorkspaceId, id: i64) -> Result<bool> {
        let now = self.now();
        self.write_contacts(move |c| write::delete_cadence_rule(c, workspace, id, now)).await
    }

    async fn rules(&self, workspace: WorkspaceId) -> Result<Vec<Rule>> {
        self.read(move |c| nudges::rules(c, workspace)).await
    }

    async fn rule(&self, workspace: WorkspaceId, id: i64) -> Result<Option<Rule>> {
        self.read(move |c| nudges::rule(c, workspace, id)).await
    }

    async fn create_rule(&self, workspace: WorkspaceId, spec: RuleSpec) -> Result<Rule> {
        let now = self.now();
        self.write_fresh(move |c| nudges::create_rule(c, workspace, &spec, now)).await
    }

    async fn update_rule(&self, workspace: WorkspaceId, id: i64, spec: RuleSpec) -> Result<Option<Rule>> {
        let now = self.now();
        self.write_fresh(move |c| nudges::update_rule(c, workspace, id, &spec, now)).await
    }

    async fn delete_rule(&self, workspace: WorkspaceId, id: i64) -> Result<bool> {
        let now = self.now();
        self.write_fresh(move |c| nudges::delete_rule(c, workspace, id, now)).await
    }

    async fn firings(
        &self,
        workspace: WorkspaceId,
        rule: Option<i64>,
        contact: Option<ContactId>,
        limit: usize,
    ) -> Result<Vec<Firing>> {
        self.read_fresh(move |c| nudges::firings(c, workspace, rule, contact, limit)).await
    }

    async fn evaluate_contacts(&self, now: Timestamp) -> Result<JobReport> {
        self.write_fresh(move |c| nudges::evaluate_contacts(c, now)).await
    }

    async fn fire_due(&self, now: Timestamp, limit: usize) -> Result<JobReport> {
        self.write_fresh(move |c| nudges::fire_due(c, now, limit)).await
    }

    async fn journeys(&self, workspace: WorkspaceId) -> Result<Vec<Journey>> {
        self.read(move |c| journeys::journeys(c, workspace)).await
    }

    async fn journey(&self, workspace: WorkspaceId, id: i64) -> Result<Option<Journey>> {
        self.read(move |c| journeys::journey(c, workspace, id)).await
    }

    async fn create_journey(&self, workspace: WorkspaceId, spec: JourneySpec) -> Result<Journey> {
        let now = self.now();
        self.write_fresh(move |c| journeys::create_journey(c, workspace, &spec, now)).await
    }

    async fn update_journey(&self, workspace: WorkspaceId, id: i64, spec: JourneySpec) -> Result<Option<Journey>> {
        let now = self.now();
        self.write_fresh(move |c| journeys::update_journey(c, workspace, id, &spec, now)).await
    }

    async fn delete_journey(&self, workspace: WorkspaceId, id: i64) -> Result<bool> {
        self.write_fresh(move |c| journeys::delete_journey(c, workspace, id)).await
    }

    async fn advance_journeys(&self, now: Timestamp, limit: usize) -> Result<JourneyReport> {
        self.write_fresh(move |c| journeys::advance(c, now, limit)).await
    }

    async fn enter_account_members(
        &self,
        workspace: WorkspaceId,
        account: i64,
        starts: Vec<JourneyStart>,
    ) -> Result<usize> {
        self.write_fresh(move |c| journeys::enter_account_members(c, workspace, account, &starts)).await
    }

    async fn journey_counts(&self, workspace: WorkspaceId, journey: i64) -> Result<JourneyCounts> {
        self.read_fresh(move |c| journeys::counts(c, workspace, journey)).await
    }

    async fn journey_step_entries(
        &self,
        workspace: WorkspaceId,
        journey: i64,
        step: u32,
        limit: usize,
    ) -> Result<Vec<JourneyEntry>> {
        self.read_fresh(move |c| journeys::step_entries(c, workspace, journey, step, limit)).await
    }

    async fn contact_journeys(&self, workspace: WorkspaceId, contact: ContactId) -> Result<Vec<JourneyEntry>> {
        self.read_fresh(move |c| journeys::contact_journeys(c, workspace, contact)).await
    }

    async fn track_history(
        &self,
        workspace: WorkspaceId,
        since: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<TrackRecord>> {
        let (since, until) = (since.as_millisecond(), until.as_millisecond());
        self.read_fresh(move |c| journeys::track_history(c, workspace, since, until)).await
    }

    async fn audience_changes(
        &self,
        workspace: WorkspaceId,
        audience: &str,
        since: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<AudienceChange>> {
        let (audience, since, until) = (audience.to_owned(), since.as_millisecond(), until.as_millisecond());
        self.read_fresh(move |c| journeys::audience_changes(c, workspace, &audience, since, until)).await
    }

    async fn interaction_history(&self, workspace: WorkspaceId, until: Timestamp) -> Result<Vec<InteractionRecord>> {
        let until = until.as_millisecond();
        self.read_fresh(move |c| journeys::interaction_history(c, workspace, until)).await
    }

    async fn cadences(&self, workspace: WorkspaceId) -> Result<Vec<ContactCadence>> {
        self.read_fresh(move |c| journeys::cadences(c, workspace)).await
    }

    async fn health_records(&self, workspace: WorkspaceId, since_day: i32) -> Result<Vec<HealthRecord>> {
        self.read(move |c| health::health_records(c, workspace, since_day)).await
    }

    async fn account_memberships(&self, workspace: WorkspaceId) -> Result<Vec<(i64, ContactId)>> {
        self.read_fresh(move |c| health::account_memberships(c, workspace)).await
    }

    async fn enqueue(&self, workspace: WorkspaceId, deliveries: Vec<NewDelivery>, now: Timestamp) -> Result<()> {
        self.write(move |c| nudges::enqueue(c, workspace, &deliveries, None, None, now.as_millisecond())).await
    }

    async fn claim_deliveries(
        &self,
        now: Timestamp,
        limit: usize,
        lease: jiff::SignedDuration,
    ) -> Result<Vec<Delivery>> {
        self.write(move |c| nudges::claim_deliveries(c, now, limit, lease.as_millis() as i64)).await
    }

    async fn finish_delivery(&self, id: i64, result: DeliveryResult, now: Timestamp) -> Result<()> {
        self.write(move |c| nudges::finish_delivery(c, id, &result, now)).await
    }

    async fn apply_to_contact(
        &self,
        delivery: i64,
        workspace: WorkspaceId,
        contact: ContactId,
        change: StepChange,
        now: Timestamp,
    ) -> Result<bool> {
        self.write_contacts(move |c| write::apply_to_contact(c, delivery, workspace, contact, change, now)).await
    }

    async fn deliveries(
        &self,
        workspace: WorkspaceId,
        status: Option<&str>,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Delivery>> {
        let status = status.map(str::to_owned);
        self.read(move |c| nudges::deliveries(c, workspace, status.as_deref(), before, limit)).await
    }

    async fn retry_delivery(&self, workspace: WorkspaceId, id: i64, now: Timestamp) -> Result<bool> {
        self.write(move |c| nudges::retry_delivery(c, workspace, id, now)).await
    }

    async fn segment_destination(&self, workspace: WorkspaceId) -> Result<Option<(String, String)>> {
        self.read(move |c| admin::segment_destination(c, workspace)).await
    }

    async fn claim_digest(&self, workspace: WorkspaceId, day: i32) -> Result<bool> {
        self.write(move |c| admin::claim_digest(c, workspace, day)).await
    }

    async fn health_model(&self, workspace: WorkspaceId) -> Result<Option<String>> {
        self.read(move |c| health::health_model(c, workspace)).await
    }

    async fn set_health_model(&self, workspace: WorkspaceId, model: &str) -> Result<()> {
        let model = model.to_owned();
        let now = self.now();
        self.write(move |c| health::set_health_model(c, workspace, &model, now)).await
    }

    async fn account_rating(&self, workspace: WorkspaceId, account: i64) -> Result<Option<i64>> {
        self.read(move |c| health::account_rating(c, workspace, account)).await
    }

    async fn set_account_rating(&self, workspace: WorkspaceId, account: i64, rating: Option<i64>) -> Result<()> {
        let now = self.now();
        self.write(move |c| health::set_account_rating(c, workspace, account, rating, now)).await
    }

    async fn member_event_counts(
        &self,
        workspace: WorkspaceId,
        account: i64,
        since_ms: i64,
        until_ms: i64,
        event: Option<&str>,
    ) -> Result<MemberEventCounts> {
        let event = event.map(str::to_owned);
        self.read_fresh(move |c| {
            health::member_event_counts(c, workspace, account, since_ms, until_ms, event.as_deref())
        })
        .await
    }

    async fn record_health(&self, workspace: WorkspaceId, record: HealthRecord) -> Result<()> {
        self.write(move |c| health::record_health(c, workspace, &record)).await
    }

    async fn health_history(&self, workspace: WorkspaceId, account: i64, limit: usize) -> Result<Vec<HealthRecord>> {
        self.read(move |c| health::health_history(c, workspace, account, limit)).await
    }

    async fn observe_health(
        &self,
        workspace: WorkspaceId,
        account: i64,
        observation: HealthObservation,
    ) -> Result<Option<HealthObservation>> {
        let now = self.now();
        self.write(move |c| health::observe_health(c, workspace, account, &observation, now)).await
    }

    async fn fire_for_account(
        &self,
        workspace: WorkspaceId,
        firing: NewAccountFiring,
        deliveries: Vec<NewDelivery>,
    ) -> Result<bool> {
        let now = self.now();
        self.write(move |c| health::fire_for_account(c, workspace, &firing, &deliveries, now)).await
    }

    async fn account_firings(
        &self,
        workspace: WorkspaceId,
        rule: Option<i64>,
        account: Option<i64>,
        limit: usize,
    ) -> Result<Vec<AccountFiring>> {
        self.read(move |c| health::account_firings(c, workspace, rule, account, limit)).await
    }

    async fn set_owner(&self, workspace: WorkspaceId, subject: OwnerSubject, id: i64, user: Option<i64>) -> Result<()> {
        let now = self.now();
        self.write(move |c| owners::set_owner(c, workspace, subject, id, user, now)).await
    }

    async fn owners(&self, workspace: WorkspaceId, subject: OwnerSubject) -> Result<Vec<(i64, i64)>> {
        self.read(move |c| owners::owners(c, workspace, subject)).await
    }

    async fn owner(&self, workspace: WorkspaceId, subject: OwnerSubject, id: i64) -> Result<Option<i64>> {
        self.read(move |c| owners::owner(c, workspace, subject, id)).await
    }

    async fn create_task(&self, workspace: WorkspaceId, spec: TaskSpec) -> Result<Task> {
        let now = self.now();
        self.write(move |c| owners::create_task(c, workspace, &spec, now)).await
    }

    async fn task(&self, workspace: WorkspaceId, id: i64) -> Result<Option<Task>> {
        self.read(move |c| owners::task(c, workspace, id)).await
    }

    async fn tasks(&self, workspace: WorkspaceId, query: TaskQuery) -> Result<Vec<Task>> {
        self.read(move |c| owners::tasks(c, workspace, &query)).await
    }

    async fn update_task(&self, workspace: WorkspaceId, id: i64, spec: TaskSpec) -> Result<Option<Task>> {
        let now = self.now();
        self.write(move |c| owners::update_task(c, workspace, id, &spec, now)).await
    }

    async fn set_task_done(&self, workspace: WorkspaceId, id: i64, done: bool) -> Result<Option<Task>> {
        let now = self.now();
        self.write(move |c| owners::set_task_done(c, workspace, id, done, now)).await
    }

    async fn delete_task(&self, workspace: WorkspaceId, id: i64) -> Result<bool> {
        self.write(move |c| owners::delete_task(c, workspace, id)).await
    }

    async fn claim_owner_digest(&self, user: i64, day: i32) -> Result<bool> {
        self.write(move |c| owners::claim_owner_digest(c, user, day)).await
    }

    async fn create_user(&self, workspace: WorkspaceId, email: &str, password_hash: &str) -> Result<User> {
        let now = self.now();
        let (email, password_hash) = (email.to_owned(), password_hash.to_owned());
        self.write(move |c| users::create_user(c, workspace, &email, &password_hash, now)).await
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        let email = email.to_owned();
        self.read(move |c| users::user_by_email(c, &email)).await
    }

    async fn user_count(&self) -> Result<i64> {
        self.read(users::user_count).await
    }

    async fn users(&self, workspace: WorkspaceId) -> Result<Vec<User>> {
        self.read(move |c| users::users(c, workspace)).await
    }

    async fn create_session(&self, user: i64, token_hash: [u8; 32], expires_at: Timestamp) -> Result<()> {
        let now = self.now();
        self.write(move |c| users::create_session(c, user, &token_hash, expires_at, now)).await
    }

    async fn session(&self, token_hash: [u8; 32], now: Timestamp) -> Result<Option<Session>> {
        self.read(move |c| users::session(c, &token_hash, now)).await
    }

    async fn delete_session(&self, token_hash: [u8; 32]) -> Result<()> {
        self.write(move |c| users::delete_session(c, &token_hash)).await
    }

    async fn touch_session(&self, token_hash: [u8; 32], at: Timestamp) -> Result<()> {
        self.write(move |c| users::touch_session(c, &token_hash, at)).await
    }

    async fn set_password(&self, user: i64, password_hash: &str) -> Result<()> {
        let password_hash = password_hash.to_owned();
        self.write(move |c| users::set_password(c, user, &password_hash)).await
    }

    async fn delete_user(&self, user: i64) -> Result<()> {
        self.write(move |c| users::delete_user(c, user)).await
    }

    async fn topics(&self, workspace: WorkspaceId) -> Result<Vec<Topic>> {
        self.read(move |c| messages::topics(c, workspace)).await
    }

    async fn create_topic(&self, workspace: WorkspaceId, name: &str, opt_in: bool) -> Result<Topic> {
        let name = name.to_owned();
        let now = self.now();
        self.write(move |c| messages::create_topic(c, workspace, &name, opt_in, now)).await
    }

    async fn update_topic(&self, workspace: WorkspaceId, id: i64, name: &str, opt_in: bool) -> Result<Option<Topic>> {
        let name = name.to_owned();
        self.write(move |c| messages::update_topic(c, workspace, id, &name, opt_in)).await
    }

    async fn delete_topic(&self, workspace: WorkspaceId, id: i64) -> Result<bool> {
        self.write(move |c| messages::delete_topic(c, workspace, id)).await
    }

    async fn templates(&self, workspace: WorkspaceId) -> Result<Vec<Template>> {
        self.read(move |c| messages::templates(c, workspace)).await
    }

    async fn template(&self, workspace: WorkspaceId, id: i64) -> Result<Option<Template>> {
        self.read(move |c| messages::template(c, workspace, id)).await
    }

    async fn create_template(&self, workspace: WorkspaceId, spec: TemplateSpec) -> Result<Template> {
        let now = self.now();
        self.write(move |c| messages::create_template(c, workspace, &spec, now)).await
    }

    async fn update_template(&self, workspace: WorkspaceId, id: i64, spec: TemplateSpec) -> Result<Option<Template>> {
        let now = self.now();
        self.write(move |c| messages::update_template(c, workspace, id, &spec, now)).await
    }

    async fn delete_template(&self, workspace: WorkspaceId, id: i64) -> Result<bool> {
        self.write(move |c| messages::delete_template(c, workspace, id)).await
    }

    async fn sender(&self, workspace: WorkspaceId, new_secret: &str) -> Result<Sender> {
        let new_secret = new_secret.to_owned();
        self.write(move |c| messages::sender(c, workspace, &new_secret)).await
    }

    async fn set_sender(&self, workspace: WorkspaceId, sender: Sender) -> Result<Sender> {
        self.write(move |c| messages::set_sender(c, workspace, &sender)).await
    }

    async fn message_limits(&self, workspace: WorkspaceId) -> Result<MessageLimits> {
        self.read(move |c| messages::message_limits(c, workspace)).await
    }

    async fn set_message_limits(&self, workspace: WorkspaceId, limits: MessageLimits) -> Result<()> {
        self.write(move |c| messages::set_message_limits(c, workspace, &limits)).await
    }

    async fn messages_sent_since(&self, workspace: WorkspaceId, contact: ContactId, since: Timestamp) -> Result<i64> {
        self.read(move |c| messages::messages_sent_since(c, workspace, contact, since)).await
    }

    async fn subscriptions(&self, workspace: WorkspaceId, contact: ContactId) -> Result<Vec<Subscription>> {
        self.read(move |c| messages::subscriptions(c, workspace, contact)).await
    }

    async fn set_subscription(
        &self,
        workspace: WorkspaceId,
        contact: ContactId,
        topic: i64,
        subscribed: bool,
        at: Timestamp,
    ) -> Result<()> {
        self.write(move |c| messages::set_subscription(c, workspace, contact, topic, subscribed, at)).await
    }

    async fn firing_event(&self, workspace: WorkspaceId, firing: i64) -> Result<Option<String>> {
        self.read_fresh(move |c| messages::firing_event(c, workspace, firing)).await
    }

    async fn is_suppressed(&self, workspace: WorkspaceId, email: &str) -> Result<bool> {
        let email = email.to_owned();
        self.read_fresh(move |c| messages::is_suppressed(c, workspace, &email)).await
    }

    async fn record_message(&self, workspace: WorkspaceId, entry: NewMessageEntry) -> Result<()> {
        self.write(move |c| messages::record_message(c, workspace, &entry)).await
    }

    async fn fail_held_message(
        &self,
        workspace: WorkspaceId,
        delivery: i64,
        reason: &str,
        at: Timestamp,
    ) -> Result<()> {
        let reason = reason.to_owned();
        self.write(move |c| messages::fail_held_message(c, workspace, delivery, &reason, at)).await
    }

    async fn message_log(&self, workspace: WorkspaceId, contact: ContactId, limit: usize) -> Result<Vec<MessageEntry>> {
        self.read(move |c| messages::message_log(c, workspace, contact, limit)).await
    }

    async fn record_engagement(
        &self,
        workspace: WorkspaceId,
        email_id: &str,
        engagement: Engagement,
        at: Timestamp,
        limit: i64,
    ) -> Result<Option<MessageEntry>> {
        let email_id = email_id.to_owned();
        self.write(move |c| messages::record_engagement(c, workspace, &email_id, engagement, at, limit)).await
    }

    async fn record_unsubscribe(
        &self,
        workspace: WorkspaceId,
        contact: ContactId,
        topic: i64,
        at: Timestamp,
    ) -> Result<Option<MessageEntry>> {
        self.write(move |c| messages::record_unsubscribe(c, workspace, contact, topic, at)).await
    }

    async fn record_bounce(
        &self,
        workspace: WorkspaceId,
        contact: ContactId,
        email: &str,
        reason: &str,
        at: Timestamp,
    ) -> Result<()> {
        let (email, reason) = (email.to_owned(), reason.to_owned());
        self.write(move |c| messages::record_bounce(c, workspace, contact, &email, &reason, at)).await
    }

    async fn is_bounced(&self, workspace: WorkspaceId, contact: ContactId, email: &str) -> Result<bool> {
        let email = email.to_owned();
        self.read(move |c| messages::is_bounced(c, workspace, contact, &email)).await
    }

    async fn has_track(&self, workspace: WorkspaceId, contact: ContactId, name: &str) -> Result<bool> {
        let name = name.to_owned();
        self.read_fresh(move |c| messages::has_track(c, workspace, contact, &name)).await
    }

    async fn message_stats(&self, workspace: WorkspaceId, by: StatsBy) -> Result<Vec<(i64, MessageCounts)>> {
        self.read(move |c| messages::message_stats(c, workspace, by)).await
    }

    async fn enqueue_track(
        &self,
        workspace: WorkspaceId,
        contact: ContactId,
        event: &str,
        properties: serde_json::Map<String, serde_json::Value>,
        at: Timestamp,
    ) -> Result<()> {
        let event = event.to_owned();
        let now = self.now();
        self.write(move |c| {
            let Some(workspace) = admin::workspace(c, workspace)? else { return Ok(()) };
            nudges::enqueue_track(c, &workspace, contact, &event, properties, at.as_millisecond(), now)
        })
        .await
    }

    async fn ping(&self) -> Result<()> {
        self.read(|c| Ok(c.query_row("SELECT 1", [], |_| Ok(()))?)).await
    }
}
