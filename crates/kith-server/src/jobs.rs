//! Background work: pending-event expiry. Each job is also a plain function so tests run it
//! on demand instead of waiting.

use std::time::Duration;

use crate::AppState;

/// How often pending events past their retention are deleted.
const EXPIRY_INTERVAL: Duration = Duration::from_secs(3600);

/// Starts the periodic jobs; abort the handle to stop them.
pub fn start(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(EXPIRY_INTERVAL);
        loop {
            interval.tick().await;
            if let Err(error) = expire_pending(&state).await {
                tracing::warn!(%error, "pending-event expiry failed; retrying at the next interval");
            }
        }
    })
}

/// Deletes pending events older than each workspace's retention.
pub async fn expire_pending(state: &AppState) -> Result<u64, kith_store::StoreError> {
    let deleted = state.store.expire_pending(state.clock.now()).await?;
    if deleted > 0 {
        tracing::info!(deleted, "expired pending events of users never identified");
    }
    Ok(deleted)
}
