//! What the single SQLite writer remembers between batches, so that a batch runs no query
//! for ids, emails, contact rows or contact-days it has seen recently.
//!
//! Only the ingest path fills it, and it is authoritative because every write goes through
//! the one write connection: the other write paths that change contacts, identities or
//! interactions clear it, and so does a failed batch. Each map is bounded; when one is full
//! it starts over, which only costs queries.

use std::collections::{HashMap, HashSet};

use crate::model::{ContactId, WorkspaceId};
use crate::state::ContactState;

/// Entries of the id and email maps before they start over.
const MAX_KEYS: usize = 50_000;
/// Contact rows kept.
const MAX_STATES: usize = 10_000;
/// Contact-days kept.
const MAX_DAYS: usize = 50_000;
/// Pending ids tracked; past this the writer stops trusting the set and asks the database.
const MAX_PENDING_IDS: usize = 500_000;

/// The writer's memory.
#[derive(Default)]
pub struct WriterCache {
    /// `(workspace, userId/anonymousId/alias)` → contact.
    pub identities: HashMap<(WorkspaceId, String), ContactId>,
    /// `(workspace, email)` → contact.
    pub emails: HashMap<(WorkspaceId, String), ContactId>,
    /// Contact rows as last saved.
    pub states: HashMap<ContactId, ContactState>,
    /// `(contact, day)` → the activity interaction's row id.
    pub days: HashMap<(ContactId, i32), i64>,
    /// `(workspace, audience key)` → the audience's id.
    pub audiences: HashMap<(WorkspaceId, String), i64>,
    /// Ids that have pending events; `None` until loaded or after it grew too large.
    pub pending_ids: Option<HashSet<(WorkspaceId, String)>>,
    pending_loaded: bool,
}

impl WriterCache {
    /// Forgets everything (another write path changed the data, or a batch failed).
    pub fn clear(&mut self) {
        *self = WriterCache::default();
    }

    /// Whether the pending-id set must be loaded before use.
    pub fn needs_pending_load(&self) -> bool {
        !self.pending_loaded
    }

    /// Installs the pending ids read from the database.
    pub fn load_pending(&mut self, ids: Option<HashSet<(WorkspaceId, String)>>) {
        self.pending_ids = ids;
        self.pending_loaded = true;
    }

    /// Whether an id may have pending events (always true when the set is not trusted).
    pub fn may_have_pending(&self, key: &(WorkspaceId, String)) -> bool {
        self.pending_ids.as_ref().is_none_or(|ids| ids.contains(key))
    }

    /// Notes an id that now has pending events.
    pub fn note_pending(&mut self, key: (WorkspaceId, String)) {
        if let Some(ids) = &mut self.pending_ids {
            ids.insert(key);
            if ids.len() > MAX_PENDING_IDS {
                self.pending_ids = None;
            }
        }
    }

    /// Remembers an id's contact.
    pub fn note_identity(&mut self, key: (WorkspaceId, String), contact: ContactId) {
        if self.identities.len() >= MAX_KEYS {
            self.identities.clear();
        }
        self.identities.insert(key, contact);
    }

    /// Remembers an email's contact.
    pub fn note_email(&mut self, key: (WorkspaceId, String), contact: ContactId) {
        if self.emails.len() >= MAX_KEYS {
            self.emails.clear();
        }
        self.emails.insert(key, contact);
    }

    /// Remembers a contact row as saved.
    pub fn note_state(&mut self, contact: ContactId, state: ContactState) {
        if self.states.len() >= MAX_STATES {
            self.states.clear();
        }
        self.states.insert(contact, state);
    }

    /// Remembers a contact-day's interaction row.
    pub fn note_day(&mut self, key: (ContactId, i32), row: i64) {
        if self.days.len() >= MAX_DAYS {
            self.days.clear();
        }
        self.days.insert(key, row);
    }
}

/// The pending ids, or `None` when there are too many to keep.
pub fn pending_ids_limit() -> usize {
    MAX_PENDING_IDS
}
