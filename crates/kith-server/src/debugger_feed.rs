//! The live event debugger's feed: how kith read each incoming event, kept for the last few hundred
//! events and broadcast to whoever watches.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use kith_core::Rejection;
use kith_store::{Activity, Incoming, Outcome, WorkspaceId};
use serde::Serialize;
use tokio::sync::{broadcast, watch};

use crate::error::ApiError;

/// Entries kept per workspace for someone who opens the debugger late.
const KEPT: usize = 300;
/// Entries a slow stream may fall behind by before it skips some.
const CHANNEL: usize = 256;

/// How kith read one event, or why it refused it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DebugEntry {
    /// Sequence number, increasing within the workspace.
    pub seq: u64,
    /// Whose feed shows the entry; not sent to the browser.
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

/// The feed: for each workspace, its own sequence, its last [`KEPT`] entries and a broadcast
/// channel, so a busy workspace neither pushes out another's entries nor reveals its volume
/// through the sequence numbers, and a stream wakes only for its own workspace's events.
#[derive(Clone)]
pub struct DebugFeed {
    inner: Arc<Inner>,
}

struct Inner {
    workspaces: Mutex<HashMap<WorkspaceId, WorkspaceFeed>>,
    /// Open streams per user.
    streams: Mutex<HashMap<i64, usize>>,
    /// Open streams in all.
    watchers: AtomicUsize,
    /// Set when the server shuts down: open streams end.
    closed: watch::Sender<bool>,
}

struct WorkspaceFeed {
    seq: u64,
    kept: VecDeque<Arc<DebugEntry>>,
    sender: broadcast::Sender<Arc<DebugEntry>>,
}

impl WorkspaceFeed {
    fn new() -> Self {
        WorkspaceFeed { seq: 0, kept: VecDeque::with_capacity(KEPT), sender: broadcast::channel(CHANNEL).0 }
    }
}

impl Default for DebugFeed {
    fn default() -> Self {
        DebugFeed {
            inner: Arc::new(Inner {
                workspaces: Mutex::default(),
                streams: Mutex::default(),
                watchers: AtomicUsize::new(0),
                closed: watch::channel(false).0,
            }),
        }
    }
}

/// A live subscription to one workspace's entries.
pub struct Subscription {
    /// The entries kept when it started, oldest first.
    pub backlog: Vec<Arc<DebugEntry>>,
    /// Every entry published after them.
    pub receiver: broadcast::Receiver<Arc<DebugEntry>>,
    /// Turns true when the server shuts down.
    pub closed: watch::Receiver<bool>,
}

/// One open stream of a user, counted until dropped.
pub struct StreamTicket {
    inner: Arc<Inner>,
    user: i64,
}

impl Drop for StreamTicket {
    fn drop(&mut self) {
        let mut streams = self.inner.streams.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(open) = streams.get_mut(&self.user) {
            *open -= 1;
            if *open == 0 {
                streams.remove(&self.user);
            }
        }
        self.inner.watchers.fetch_sub(1, Ordering::Relaxed);
    }
}

impl DebugFeed {
    /// Whether anyone watches live; readings of accepted events are only taken then, so the
    /// ingest path pays nothing for the debugger when it is closed.
    pub fn is_watched(&self) -> bool {
        self.inner.watchers.load(Ordering::Relaxed) > 0
    }

    /// Records and broadcasts an entry, numbered in its workspace's sequence.
    pub fn publish(&self, mut entry: DebugEntry) {
        let mut workspaces = self.inner.workspaces.lock().unwrap_or_else(|p| p.into_inner());
        let feed = workspaces.entry(entry.workspace_id).or_insert_with(WorkspaceFeed::new);
        feed.seq += 1;
        entry.seq = feed.seq;
        let entry = Arc::new(entry);
        if feed.kept.len() == KEPT {
            feed.kept.pop_front();
        }
        feed.kept.push_back(entry.clone());
        // No receiver is not an error: the entry is kept for whoever opens the page later.
        let _ = feed.sender.send(entry);
    }

    /// The kept entries of a workspace, oldest first.
    pub fn recent(&self, workspace: WorkspaceId) -> Vec<Arc<DebugEntry>> {
        let workspaces = self.inner.workspaces.lock().unwrap_or_else(|p| p.into_inner());
        workspaces.get(&workspace).map(|feed| feed.kept.iter().cloned().collect()).unwrap_or_default()
    }

    /// A stream for `user`, unless they already hold `cap` open.
    pub fn open_stream(&self, user: i64, cap: usize) -> Option<StreamTicket> {
        let mut streams = self.inner.streams.lock().unwrap_or_else(|p| p.into_inner());
        let open = streams.entry(user).or_insert(0);
        if *open >= cap {
            return None;
        }
        *open += 1;
        self.inner.watchers.fetch_add(1, Ordering::Relaxed);
        Some(StreamTicket { inner: self.inner.clone(), user })
    }

    /// A live subscription to a workspace: what is kept and what comes next, with nothing
    /// falling between the two.
    pub fn subscribe(&self, workspace: WorkspaceId) -> Subscription {
        let mut workspaces = self.inner.workspaces.lock().unwrap_or_else(|p| p.into_inner());
        let feed = workspaces.entry(workspace).or_insert_with(WorkspaceFeed::new);
        Subscription {
            backlog: feed.kept.iter().cloned().collect(),
            receiver: feed.sender.subscribe(),
            closed: self.inner.closed.subscribe(),
        }
    }

    /// Ends every open stream (the server is shutting down).
    pub fn close(&self) {
        self.inner.closed.send_replace(true);
    }
}
