//! The PostgreSQL backend, for several kith nodes on one database.
//!
//! Every node runs its own ingest pipeline, so writers of different nodes meet in the
//! database. Writes that plan from what they read (ingest batches, manual interactions,
//! merges, deletions, cadences) take one transaction-scoped advisory lock first
//! ([`lock_contacts`]): they run one at a time across all nodes, each seeing everything the
//! previous one committed, which is what keeps "one activity per contact per day" and the
//! closeness keys exact. Background jobs claim their rows with `FOR UPDATE SKIP LOCKED`, so
//! every node can run them.

mod admin;
mod migrate;
mod nudges;
mod pool;
mod read;
mod users;
mod write;

use async_trait::async_trait;
use jiff::Timestamp;
use kith_core::rules::RuleSpec;
use kith_core::Event;
use tokio_postgres::GenericClient;

use crate::model::*;
use crate::{Result, Store, StoreError};

pub use migrate::MIGRATIONS;
pub use pool::{create_database, drop_database, with_database_name};

/// The advisory lock that serialises the writes planned from what they read.
const CONTACTS_LOCK: i64 = 0x6b69_7468_0001;
/// The advisory lock held while migrating, so that nodes starting together migrate once.
const MIGRATION_LOCK: i64 = 0x6b69_7468_0002;

/// Options for connecting.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// `postgres://user:password@host:port/database`.
    pub url: String,
    /// Connections this node keeps open at most.
    pub max_connections: usize,
}

impl PostgresOptions {
    /// Defaults for a database URL.
    pub fn new(url: impl Into<String>) -> Self {
        PostgresOptions { url: url.into(), max_connections: 16 }
    }
}

/// The PostgreSQL store.
#[derive(Clone)]
pub struct PostgresStore {
    pool: pool::Pool,
}

impl PostgresStore {
    /// Connects and migrates the database.
    pub async fn open(options: &PostgresOptions) -> Result<Self> {
        let pool = pool::Pool::new(&options.url, options.max_connections)?;
        migrate::run(&mut *pool.get().await?).await?;
        Ok(PostgresStore { pool })
    }

    /// Applies pending migrations only; returns the versions applied.
    pub async fn migrate(url: &str) -> Result<Vec<i64>> {
        let pool = pool::Pool::new(url, 1)?;
        let applied = migrate::run(&mut *pool.get().await?).await?;
        Ok(applied)
    }
}

/// Takes the lock that makes planned writes run one at a time across nodes; it is released
/// when the transaction ends.
pub(crate) async fn lock_contacts(tx: &impl GenericClient) -> Result<()> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&CONTACTS_LOCK]).await?;
    Ok(())
}

fn now_ms() -> i64 {
    Timestamp::now().as_millisecond()
}

#[async_trait]
impl Store for PostgresStore {
    async fn create_workspace(&self, name: &str) -> Result<Workspace> {
        admin::create_workspace(&mut *self.pool.get().await?, name).await
    }

    async fn workspaces(&self) -> Result<Vec<Workspace>> {
        admin::workspaces(&*self.pool.get().await?).await
    }

    async fn workspace(&self, id: WorkspaceId) -> Result<Option<Workspace>> {
        admin::workspace(&*self.pool.get().await?, id).await
    }

    async fn update_workspace(&self, id: WorkspaceId, patch: WorkspacePatch) -> Result<Workspace> {
        admin::update_workspace(&mut *self.pool.get().await?, id, patch).await
    }

    async fn signing_secret(&self, id: WorkspaceId) -> Result<Option<String>> {
        admin::signing_secret(&*self.pool.get().await?, id).await
    }

    async fn create_key(&self, workspace: WorkspaceId, kind: KeyKind, name: &str, key: &str) -> Result<ApiKey> {
        admin::create_key(&*self.pool.get().await?, workspace, kind, name, key).await
    }

    async fn find_key(&self, hash: [u8; 32]) -> Result<Option<ApiKey>> {
        admin::find_key(&*self.pool.get().await?, &hash).await
    }

    async fn keys(&self, workspace: WorkspaceId) -> Result<Vec<ApiKey>> {
        admin::keys(&*self.pool.get().await?, workspace).await
    }

    async fn revoke_key(&self, workspace: WorkspaceId, id: i64) -> Result<bool> {
        admin::revoke_key(&*self.pool.get().await?, workspace, id).await
    }

    async fn write_events(&self, batch: Vec<Incoming>) -> Result<Vec<Outcome>> {
        write::write_events(&mut *self.pool.get().await?, &batch).await
    }

    async fn preview(&self, workspace: WorkspaceId, event: Event) -> Result<Preview> {
        write::preview(&*self.pool.get().await?, workspace, event).await
    }

    async fn expire_pending(&self, now: Timestamp) -> Result<u64> {
        write::expire_pending(&mut *self.pool.get().await?, now.as_millisecond()).await
    }

    async fn contacts(&self, workspace: WorkspaceId, query: ContactQuery) -> Result<Page<Contact>> {
        read::contacts(&*self.pool.get().await?, workspace, &query).await
    }

    async fn contact(&self, workspace: WorkspaceId, key: ContactKey) -> Result<Option<Contact>> {
        read::contact(&*self.pool.get().await?, workspace, &key).await
    }

    async fn identities(&self, workspace: WorkspaceId, contact: ContactId) -> Result<Vec<Identity>> {
        read::identities(&*self.pool.get().await?, workspace, contact).await
    }

    async fn timeline(
        &self,
        workspace: WorkspaceId,
        contact: ContactId,
        cursor: Option<Cursor>,
        limit: usize,
    ) -> Result<Page<Interaction>> {
        read::timeline(&*self.pool.get().await?, workspace, contact, cursor.as_ref(), limit).await
    }

    async fn events(
        &self,
        workspace: WorkspaceId,
        contact: ContactId,
        cursor: Option<Cursor>,
        limit: usize,
    ) -> Result<Page<StoredEvent>> {
        read::events(&*self.pool.get().await?, workspace, contact, cursor.as_ref(), limit).await
    }

    async fn identify_payloads(
        &self,
        workspace: WorkspaceId,
        contact: ContactId,
        until: Timestamp,
    ) -> Result<Vec<String>> {
        read::identify_payloads(&*self.pool.get().await?, workspace, contact, until.as_millisecond()).await
    }

    async fn add_interaction(
        &self,
        workspace: WorkspaceId,
        contact: ContactId,
        interaction: NewInteraction,
    ) -> Result<Interaction> {
        write::add_interaction(&mut *self.pool.get().await?, workspace, contact, interaction).await
    }

    async fn delete_contact(&self, workspace: WorkspaceId, contact: ContactId, suppress: bool) -> Result<bool> {
        write::delete_contact(&mut *self.pool.get().await?, workspace, contact, suppress).await
    }

    async fn merge_contacts(&self, workspace: WorkspaceId, into: ContactId, from: ContactId) -> Result<Contact> {
        write::merge_contacts(&mut *self.pool.get().await?, workspace, into, from).await
    }

    async fn set_cadence(&self, workspace: WorkspaceId, contact: ContactId, days: Option<i64>) -> Result<Contact> {
        write::set_cadence(&mut *self.pool.get().await?, workspace, contact, days).await
    }

    async fn alias_conflicts(&self, workspace: WorkspaceId) -> Result<Vec<AliasConflictRecord>> {
        read::alias_conflicts(&*self.pool.get().await?, workspace).await
    }

    async fn accounts(&self, workspace: WorkspaceId, limit: usize) -> Result<Vec<Account>> {
        read::accounts(&*self.pool.get().await?, workspace, None, limit).await
    }

    async fn account(&self, workspace: WorkspaceId, group_id: &str) -> Result<Option<Account>> {
        Ok(read::accounts(&*self.pool.get().await?, workspace, Some(group_id), 1).await?.pop())
    }

    async fn contact_accounts(&self, workspace: WorkspaceId, contact: ContactId) -> Result<Vec<Account>> {
        read::contact_accounts(&*self.pool.get().await?, workspace, contact).await
    }

    async fn audiences(&self, workspace: WorkspaceId) -> Result<Vec<Audience>> {
        read::audiences(&*self.pool.get().await?, workspace, None).await
    }

    async fn audience(&self, workspace: WorkspaceId, key: &str) -> Result<Option<Audience>> {
        Ok(read::audiences(&*self.pool.get().await?, workspace, Some(key)).await?.pop())
    }

    async fn contact_audiences(&self, workspace: WorkspaceId, contact: ContactId) -> Result<Vec<AudienceMembership>> {
        read::contact_audiences(&*self.pool.get().await?, workspace, contact).await
    }

    async fn audience_history(
        &self,
        workspace: WorkspaceId,
        audience: Option<&str>,
        contact: Option<ContactId>,
        limit: usize,
    ) -> Result<Vec<AudienceHistoryEntry>> {
        read::audience_history(&*self.pool.get().await?, workspace, audience, contact, limit).await
    }

    async fn cadence_rules(&self, workspace: WorkspaceId) -> Result<Vec<CadenceRule>> {
        read::cadence_rules(&*self.pool.get().await?, workspace).await
    }

    async fn set_cadence_rule(
        &self,
        workspace: WorkspaceId,
        target: &str,
        key: &str,
        days: i64,
    ) -> Result<CadenceRule> {
        write::set_cadence_rule(&mut *self.pool.get().await?, workspace, target, key, days).await
    }

    async fn delete_cadence_rule(&self, workspace: WorkspaceId, id: i64) -> Result<bool> {
        write::delete_cadence_rule(&mut *self.pool.get().await?, workspace, id).await
    }

    async fn rules(&self, workspace: WorkspaceId) -> Result<Vec<Rule>> {
        nudges::rules(&*self.pool.get().await?, workspace).await
    }

    async fn rule(&self, workspace: WorkspaceId, id: i64) -> Result<Option<Rule>> {
        nudges::rule(&*self.pool.get().await?, workspace, id).await
    }

    async fn create_rule(&self, workspace: WorkspaceId, spec: RuleSpec) -> Result<Rule> {
        nudges::create_rule(&*self.pool.get().await?, workspace, &spec, now_ms()).await
    }

    async fn update_rule(&self, workspace: WorkspaceId, id: i64, spec: RuleSpec) -> Result<Option<Rule>> {
        nudges::update_rule(&mut *self.pool.get().await?, workspace, id, &spec, now_ms()).await
    }

    async fn delete_rule(&self, workspace: WorkspaceId, id: i64) -> Result<bool> {
        nudges::delete_rule(&mut *self.pool.get().await?, workspace, id, now_ms()).await
    }

    async fn firings(
        &self,
        workspace: WorkspaceId,
        rule: Option<i64>,
        contact: Option<ContactId>,
        limit: usize,
    ) -> Result<Vec<Firing>> {
        nudges::firings(&*self.pool.get().await?, workspace, rule, contact, limit).await
    }

    async fn evaluate_contacts(&self, now: Timestamp) -> Result<JobReport> {
        nudges::evaluate_contacts(&mut *self.pool.get().await?, now).await
    }

    async fn fire_due(&self, now: Timestamp, limit: usize) -> Result<JobReport> {
        nudges::fire_due(&mut *self.pool.get().await?, now, limit).await
    }

    async fn enqueue(&self, workspace: WorkspaceId, deliveries: Vec<NewDelivery>, now: Timestamp) -> Result<()> {
        nudges::enqueue(&*self.pool.get().await?, workspace, &deliveries, None, now.as_millisecond()).await
    }

    async fn claim_deliveries(
        &self,
        now: Timestamp,
        limit: usize,
        lease: jiff::SignedDuration,
    ) -> Result<Vec<Delivery>> {
        nudges::claim_deliveries(&*self.pool.get().await?, now, limit, lease.as_millis() as i64).await
    }

    async fn finish_delivery(&self, id: i64, result: DeliveryResult, now: Timestamp) -> Result<()> {
        nudges::finish_delivery(&*self.pool.get().await?, id, &result, now).await
    }

    async fn deliveries(
        &self,
        workspace: WorkspaceId,
        status: Option<&str>,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Delivery>> {
        nudges::deliveries(&*self.pool.get().await?, workspace, status, before, limit).await
    }

    async fn retry_delivery(&self, workspace: WorkspaceId, id: i64, now: Timestamp) -> Result<bool> {
        nudges::retry_delivery(&*self.pool.get().await?, workspace, id, now).await
    }

    async fn segment_destination(&self, workspace: WorkspaceId) -> Result<Option<(String, String)>> {
        admin::segment_destination(&*self.pool.get().await?, workspace).await
    }

    async fn claim_digest(&self, workspace: WorkspaceId, day: i32) -> Result<bool> {
        admin::claim_digest(&*self.pool.get().await?, workspace, day).await
    }

    async fn create_user(&self, workspace: WorkspaceId, email: &str, password_hash: &str) -> Result<User> {
        users::create_user(&*self.pool.get().await?, workspace, email, password_hash).await
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        users::user_by_email(&*self.pool.get().await?, email).await
    }

    async fn user_count(&self) -> Result<i64> {
        users::user_count(&*self.pool.get().await?).await
    }

    async fn users(&self, workspace: WorkspaceId) -> Result<Vec<User>> {
        users::users(&*self.pool.get().await?, workspace).await
    }

    async fn create_session(&self, user: i64, token_hash: [u8; 32], expires_at: Timestamp) -> Result<()> {
        users::create_session(&*self.pool.get().await?, user, &token_hash, expires_at).await
    }

    async fn session(&self, token_hash: [u8; 32], now: Timestamp) -> Result<Option<Session>> {
        users::session(&*self.pool.get().await?, &token_hash, now).await
    }

    async fn delete_session(&self, token_hash: [u8; 32]) -> Result<()> {
        users::delete_session(&*self.pool.get().await?, &token_hash).await
    }

    async fn touch_session(&self, token_hash: [u8; 32], at: Timestamp) -> Result<()> {
        users::touch_session(&*self.pool.get().await?, &token_hash, at).await
    }

    async fn set_password(&self, user: i64, password_hash: &str) -> Result<()> {
        users::set_password(&mut *self.pool.get().await?, user, password_hash).await
    }

    async fn delete_user(&self, user: i64) -> Result<()> {
        users::delete_user(&mut *self.pool.get().await?, user).await
    }

    async fn ping(&self) -> Result<()> {
        self.pool.get().await?.execute("SELECT 1", &[]).await?;
        Ok(())
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(error: tokio_postgres::Error) -> Self {
        match error.as_db_error() {
            Some(db) => StoreError::Database(format!("{} ({})", db.message(), db.code().code())),
            None => StoreError::Database(error.to_string()),
        }
    }
}
