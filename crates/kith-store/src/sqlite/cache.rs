//! What the single SQLite writer remembers between batches, so that a batch runs no query
//! for ids, emails, contact rows or contact-days it has seen recently.
//!
//! Only the ingest path fills it, and it is authoritative because every write goes through
//! the one write connection: the other write paths that change contacts, identities or
//! interactions clear it, and so does a failed batch. Each map is bounded and keeps what was
//! used recently ([`Recent`]); what falls out only costs a query.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

use crate::records::{ContactId, WorkspaceId};
use crate::state::ContactState;

/// Entries of the id and email maps at most (two generations of half as many: [`Recent`]).
const MAX_KEYS: usize = 50_000;
/// Contact rows kept at most.
const MAX_STATES: usize = 10_000;
/// Contact-days kept at most.
const MAX_DAYS: usize = 50_000;

/// A bounded map that keeps what was used recently, in two generations: entries go into the
/// current one; when it is full it becomes the previous one and the one before is dropped.
/// An entry found in the previous generation moves back into the current one. So an entry
/// is evicted only after a whole generation went by without it being used (least recently
/// used, approximately), at the cost of one extra lookup on a miss and no bookkeeping on a hit.
#[derive(Debug)]
pub struct Recent<K, V> {
    current: HashMap<K, V>,
    previous: HashMap<K, V>,
    generation: usize,
}

impl<K: Eq + Hash, V> Recent<K, V> {
    /// A map of at most `capacity` entries: two generations of half as many.
    fn with_capacity(capacity: usize) -> Self {
        Recent { current: HashMap::new(), previous: HashMap::new(), generation: (capacity / 2).max(1) }
    }

    /// The value of `key`, marking it used.
    pub fn get(&mut self, key: &K) -> Option<&V> {
        if !self.current.contains_key(key) {
            let (key, value) = self.previous.remove_entry(key)?;
            self.insert(key, value);
        }
        self.current.get(key)
    }

    /// Takes the value of `key` out.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        self.current.remove(key).or_else(|| self.previous.remove(key))
    }

    /// Sets the value of `key`, starting a new generation if the current one is full.
    pub fn insert(&mut self, key: K, value: V) {
        if self.current.len() >= self.generation && !self.current.contains_key(&key) {
            self.previous = std::mem::take(&mut self.current);
        }
        self.previous.remove(&key);
        self.current.insert(key, value);
    }
}
/// Pending ids tracked; past this the writer stops trusting the set and asks the database.
const MAX_PENDING_IDS: usize = 500_000;

/// The writer's memory.
pub struct WriterCache {
    /// `(workspace, userId/anonymousId/alias)` → contact.
    pub identities: Recent<(WorkspaceId, String), ContactId>,
    /// `(workspace, email)` → contact.
    pub emails: Recent<(WorkspaceId, String), ContactId>,
    /// Contact rows as last saved.
    pub states: Recent<ContactId, ContactState>,
    /// `(contact, day)` → the activity interaction's row id.
    pub days: Recent<(ContactId, i32), i64>,
    /// `(workspace, audience key)` → the audience's id.
    pub audiences: HashMap<(WorkspaceId, String), i64>,
    /// Ids that have pending events; `None` until loaded or after it grew too large.
    pub pending_ids: Option<HashSet<(WorkspaceId, String)>>,
    pending_loaded: bool,
}

impl Default for WriterCache {
    fn default() -> Self {
        WriterCache {
            identities: Recent::with_capacity(MAX_KEYS),
            emails: Recent::with_capacity(MAX_KEYS),
            states: Recent::with_capacity(MAX_STATES),
            days: Recent::with_capacity(MAX_DAYS),
            audiences: HashMap::new(),
            pending_ids: None,
            pending_loaded: false,
        }
    }
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
        self.identities.insert(key, contact);
    }

    /// Remembers an email's contact.
    pub fn note_email(&mut self, key: (WorkspaceId, String), contact: ContactId) {
        self.emails.insert(key, contact);
    }

    /// Remembers a contact row as saved.
    pub fn note_state(&mut self, contact: ContactId, state: ContactState) {
        self.states.insert(contact, state);
    }

    /// Remembers a contact-day's interaction row.
    pub fn note_day(&mut self, key: (ContactId, i32), row: i64) {
        self.days.insert(key, row);
    }
}

/// The pending ids, or `None` when there are too many to keep.
pub fn pending_ids_limit() -> usize {
    MAX_PENDING_IDS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_keeps_what_was_used_and_drops_what_was_not() {
        let mut recent = Recent::with_capacity(6);
        for key in 0..3 {
            recent.insert(key, key * 10);
        }
        // 0 is used; then three more fill a generation: 1 and 2 were not used in it.
        assert_eq!(recent.get(&0), Some(&0));
        for key in 3..6 {
            recent.insert(key, key * 10);
            assert_eq!(recent.get(&0), Some(&0), "used all along, never dropped");
        }
        for key in 6..9 {
            recent.insert(key, key * 10);
        }
        assert_eq!(recent.get(&1), None, "unused for a whole generation");
        assert_eq!(recent.get(&0), Some(&0));
        let held = recent.current.len() + recent.previous.len();
        assert!(held <= 6, "at most two generations: {held}");
        assert_eq!(recent.remove(&0), Some(0));
        assert_eq!(recent.get(&0), None);
    }
}
