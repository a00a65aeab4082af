//! The live event debugger's feed: how kith read each incoming event (SPEC §7), kept for the
//! last few hundred events and broadcast to whoever watches.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use kith_core::Rejection;
use kith_store::{Activity, Incoming, Outcome, WorkspaceId};
use serde::Serialize;
use tokio::sync::broadcast;

use crate::error::ApiError;

/// Entries kept for someone who opens the debugger late.
const KEPT: usize = 300;

/// How kith read one event, or why it refused it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DebugEntry {
    /// Sequence number, increasing.
    pub seq: u64,
    /// Workspace.
    #[serde(skip)]
    pub workspace_id: WorkspaceId,
    /// When kith received it.
    pub received_at: String,
    /// `added`, `merged`, `stored`, `pending`, `duplicate`, `suppressed` or `rejected`.
    pub status: String,
    /// Segment call type.
    pub event_type: Option<String>,
    /// messageId.
    pub message_id: Option<String>,
    /// The email it names.
    pub email: Option<String>,
    /// userId.
    pub user_id: Option<String>,
    /// Event time as kith recorded it.
    pub time: Option<String>,
    /// The activity description.
    pub description: Option<String>,
    /// The contact reached.
    pub contact_id: Option<i64>,
    /// Refusal code.
    pub code: Option<String>,
    /// Refusal message.
    pub message: Option<String>,
}

/// What the debugger shows of an accepted event, taken before it goes to the writer.
pub struct Reading {
    event_type: &'static str,
    message_id: String,
    email: Option<String>,
    user_id: Option<String>,
    time: Timestamp,
    description: Option<String>,
}

impl Reading {
    /// Copies what the debugger shows.
    pub fn of(incoming: &Incoming) -> Self {
        let event = &incoming.event;
        Reading {
            event_type: event.kind.event_type().as_str(),
            message_id: event.message_id.clone(),
            email: event.email.clone(),
            user_id: event.user_id.clone(),
            time: event.time,
            description: event.description.clone(),
        }
    }
}

impl DebugEntry {
    fn blank(workspace_id: WorkspaceId, received_at: Timestamp, status: &str) -> Self {
        DebugEntry {
            seq: 0,
            workspace_id,
            received_at: received_at.to_string(),
            status: status.to_owned(),
            event_type: None,
            message_id: None,
            email: None,
            user_id: None,
            time: None,
            description: None,
            contact_id: None,
            code: None,
            message: None,
        }
    }

    /// An event kith read and wrote.
    pub fn read(workspace_id: WorkspaceId, received_at: Timestamp, reading: Reading, outcome: &Outcome) -> Self {
        let (status, contact_id, rejection) = match outcome {
            Outcome::Stored(stored) => {
                let status = match (stored.pending, stored.activity) {
                    (true, _) => "pending",
                    (false, Activity::Added) => "added",
                    (false, Activity::Merged) => "merged",
                    (false, Activity::None) => "stored",
                };
                (status, stored.contact_id, None)
            }
            Outcome::Accepted => ("accepted", None, None),
            Outcome::Duplicate => ("duplicate", None, None),
            Outcome::Suppressed => ("suppressed", None, None),
            Outcome::Rejected(rejection) => ("rejected", None, Some(rejection)),
        };
        DebugEntry {
            event_type: Some(reading.event_type.to_owned()),
            message_id: Some(reading.message_id),
            email: reading.email,
            user_id: reading.user_id,
            time: Some(reading.time.to_string()),
            description: reading.description,
            contact_id,
            code: rejection.map(|r| r.code.as_str().to_owned()),
            message: rejection.map(|r| r.message.clone()),
            ..DebugEntry::blank(workspace_id, received_at, status)
        }
    }

    /// One event of a request refused.
    pub fn rejected(workspace_id: WorkspaceId, received_at: Timestamp, rejection: &Rejection) -> Self {
        DebugEntry {
            code: Some(rejection.code.as_str().to_owned()),
            message: Some(rejection.message.clone()),
            ..DebugEntry::blank(workspace_id, received_at, "rejected")
        }
    }

    /// A whole request refused.
    pub fn refused(workspace_id: WorkspaceId, received_at: Timestamp, error: &ApiError) -> Self {
        DebugEntry {
            code: Some(error.body.code.clone()),
            message: Some(error.body.message.clone()),
            ..DebugEntry::blank(workspace_id, received_at, "rejected")
        }
    }
}

/// The feed.
#[derive(Clone)]
pub struct DebugFeed {
    sender: broadcast::Sender<Arc<DebugEntry>>,
    kept: Arc<Mutex<VecDeque<Arc<DebugEntry>>>>,
    seq: Arc<AtomicU64>,
}

impl Default for DebugFeed {
    fn default() -> Self {
        DebugFeed {
            sender: broadcast::channel(1024).0,
            kept: Arc::new(Mutex::new(VecDeque::with_capacity(KEPT))),
            seq: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl DebugFeed {
    /// Whether anyone watches live; readings of accepted events are only taken then, so the
    /// ingest path pays nothing for the debugger when it is closed.
    pub fn is_watched(&self) -> bool {
        self.sender.receiver_count() > 0
    }

    /// Records and broadcasts an entry.
    pub fn publish(&self, mut entry: DebugEntry) {
        entry.seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let entry = Arc::new(entry);
        {
            let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
            if kept.len() == KEPT {
                kept.pop_front();
            }
            kept.push_back(entry.clone());
        }
        let _ = self.sender.send(entry);
    }

    /// The kept entries of a workspace, oldest first.
    pub fn recent(&self, workspace: WorkspaceId) -> Vec<Arc<DebugEntry>> {
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.iter().filter(|entry| entry.workspace_id == workspace).cloned().collect()
    }

    /// A live subscription.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<DebugEntry>> {
        self.sender.subscribe()
    }
}
