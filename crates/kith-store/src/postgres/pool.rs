//! A small pool of connections: at most `max` open, idle ones reused, broken ones dropped.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::{Client, Config, NoTls};

use crate::{Result, StoreError};

/// Connections to one database.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    idle: Mutex<Vec<Client>>,
    permits: Arc<Semaphore>,
}

/// A connection taken from the pool; it goes back when dropped, unless it broke.
pub struct PooledClient {
    client: Option<Client>,
    inner: Arc<Inner>,
    _permit: OwnedSemaphorePermit,
}

impl Pool {
    /// A pool for `url` that opens connections on demand.
    pub fn new(url: &str, max: usize) -> Result<Self> {
        let config: Config = url.parse().map_err(|e| StoreError::Database(format!("invalid database URL: {e}")))?;
        Ok(Pool {
            inner: Arc::new(Inner {
                config,
                idle: Mutex::new(Vec::new()),
                permits: Arc::new(Semaphore::new(max.max(1))),
            }),
        })
    }

    /// A connection, waiting while all `max` are in use.
    pub async fn get(&self) -> Result<PooledClient> {
        let permit = self
            .inner
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Database("the connection pool is closed".into()))?;
        let idle = {
            let mut idle = self.inner.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            std::iter::from_fn(|| idle.pop()).find(|client| !client.is_closed())
        };
        let client = match idle {
            Some(client) => client,
            None => connect(&self.inner.config).await?,
        };
        Ok(PooledClient { client: Some(client), inner: self.inner.clone(), _permit: permit })
    }
}

async fn connect(config: &Config) -> Result<Client> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "PostgreSQL connection closed");
        }
    });
    Ok(client)
}

impl Deref for PooledClient {
    type Target = Client;

    fn deref(&self) -> &Client {
        self.client.as_ref().expect("a pooled client is present until dropped")
    }
}

impl DerefMut for PooledClient {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().expect("a pooled client is present until dropped")
    }
}

impl Drop for PooledClient {
    fn drop(&mut self) {
        if let Some(client) = self.client.take().filter(|client| !client.is_closed()) {
            self.inner.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(client);
        }
    }
}

/// `url` with its database name replaced by `name`.
pub fn with_database_name(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..].find('/').map_or(base.len(), |i| authority_start + i);
    let mut renamed = format!("{}/{name}", &base[..path_start]);
    if let Some(query) = query {
        renamed.push('?');
        renamed.push_str(query);
    }
    renamed
}

/// Creates database `name` on the server of `url` (tests give each run its own); returns
/// the URL of the new database.
pub async fn create_database(url: &str, name: &str) -> Result<String> {
    let client = Pool::new(url, 1)?.get().await?;
    client.batch_execute(&format!("CREATE DATABASE {}", quote_identifier(name))).await?;
    Ok(with_database_name(url, name))
}

/// Drops database `name` on the server of `url`, closing its connections.
pub async fn drop_database(url: &str, name: &str) -> Result<()> {
    let client = Pool::new(url, 1)?.get().await?;
    client.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_identifier(name))).await?;
    Ok(())
}

fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::with_database_name;

    #[test]
    fn replaces_the_database_name() {
        assert_eq!(with_database_name("postgres://u@h:5432/test", "x"), "postgres://u@h:5432/x");
        assert_eq!(with_database_name("postgres://u@h/test?sslmode=disable", "x"), "postgres://u@h/x?sslmode=disable");
        assert_eq!(with_database_name("postgres://u@h", "x"), "postgres://u@h/x");
    }
}
