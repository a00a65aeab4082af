//! Accounts (Segment groups) and Engage audiences, with their members.

use jiff::Timestamp;
use kith_core::closeness::{days_of_millis, score_of_raw, Model};
use kith_store::{
    Account, Audience, AudienceHistoryEntry, Contact, ContactQuery, ContactSort, Cursor, Interaction, Page, WorkspaceId,
};

use crate::error::ApiResult;
use crate::AppState;

/// Interactions read per member for an account's recent activity.
const RECENT_PER_MEMBER: usize = 3;

/// The mean of an account's members' scores at `now`, to one decimal; 0 without members.
pub fn mean_score(account: &Account, model: &Model, now: Timestamp) -> f64 {
    let now_days = days_of_millis(now.as_millisecond());
    let scores: Vec<f64> =
        account.member_keys.iter().map(|key| f64::from(score_of_raw(model.raw(*key, now_days)))).collect();
    if scores.is_empty() {
        0.0
    } else {
        (scores.iter().sum::<f64>() / scores.len() as f64 * 10.0).round() / 10.0
    }
}

/// The members of an account or audience, closest first.
fn members(account: Option<String>, audience: Option<String>, cursor: Option<Cursor>, limit: usize) -> ContactQuery {
    ContactQuery { sort: ContactSort::Closeness, account, audience, cursor, limit, ..ContactQuery::default() }
}

/// An account with its closest members and their latest interactions.
pub struct AccountMembers {
    /// The account.
    pub account: Account,
    /// Its closest members, closest first.
    pub members: Vec<Contact>,
    /// The members' latest interactions, newest first, each with its member.
    pub recent: Vec<(Contact, Interaction)>,
}

/// The account `group_id` with up to `members_shown` members and `recent_shown` interactions,
/// or `None` if the workspace has no such account.
pub async fn account(
    state: &AppState,
    workspace: WorkspaceId,
    group_id: &str,
    members_shown: usize,
    recent_shown: usize,
) -> ApiResult<Option<AccountMembers>> {
    let Some(account) = state.store.account(workspace, group_id).await? else { return Ok(None) };
    let query = members(Some(group_id.to_owned()), None, None, members_shown);
    let members = state.store.contacts(workspace, query).await?.items;
    let mut recent = Vec::new();
    for member in &members {
        let page = state.store.timeline(workspace, member.id, None, RECENT_PER_MEMBER).await?;
        recent.extend(page.items.into_iter().map(|interaction| (member.clone(), interaction)));
    }
    recent.sort_by_key(|(_, interaction)| std::cmp::Reverse(interaction.occurred_at));
    recent.truncate(recent_shown);
    Ok(Some(AccountMembers { account, members, recent }))
}

/// An audience with a page of its members and its latest entries and exits.
pub struct AudienceMembers {
    /// The audience.
    pub audience: Audience,
    /// Current members, closest first.
    pub members: Page<Contact>,
    /// Entries and exits, newest first.
    pub history: Vec<AudienceHistoryEntry>,
}

/// The audience `key` with a page of up to `members_shown` members from `cursor` and its
/// latest `history_shown` entries and exits, or `None` if the workspace has no such audience.
pub async fn audience(
    state: &AppState,
    workspace: WorkspaceId,
    key: &str,
    cursor: Option<Cursor>,
    members_shown: usize,
    history_shown: usize,
) -> ApiResult<Option<AudienceMembers>> {
    let Some(audience) = state.store.audience(workspace, key).await? else { return Ok(None) };
    let members = state.store.contacts(workspace, members(None, Some(key.to_owned()), cursor, members_shown)).await?;
    let history = state.store.audience_history(workspace, Some(key), None, history_shown).await?;
    Ok(Some(AudienceMembers { audience, members, history }))
}

/// Members of an account active (a track, page or screen call) in each of the last `weeks`
/// seven-day windows ending at `now`, oldest first: each window's start and its count.
pub async fn weekly_active_members(
    state: &AppState,
    workspace: WorkspaceId,
    account: i64,
    now: Timestamp,
    weeks: i64,
) -> Result<Vec<(Timestamp, i64)>, kith_store::StoreError> {
    const WEEK_MS: i64 = 7 * 24 * 3_600_000;
    let now_ms = now.as_millisecond();
    let mut counts = Vec::new();
    for week in (0..weeks).rev() {
        let until_ms = now_ms - week * WEEK_MS;
        let since_ms = until_ms - WEEK_MS;
        let counted = state.store.member_event_counts(workspace, account, since_ms, until_ms, None).await?;
        counts.push((kith_core::time::from_millis(since_ms), counted.members));
    }
    Ok(counts)
}
