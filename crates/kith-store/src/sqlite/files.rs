//! The database's files are private to the user kith runs as: they hold key hashes, signing
//! secrets and outbound write keys. The folder is created 0700 and the database 0600 before
//! SQLite opens it; SQLite gives its `-wal` and `-shm` files the database's permissions, and
//! files left readable by an earlier version are tightened at every open.

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::{Result, StoreError};

/// Creates the folder (0700) and the database file (0600) if missing, and makes the database
/// and its `-wal` and `-shm` files 0600 if they exist.
pub fn prepare(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty() && !p.exists()) {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|e| StoreError::caused(format!("cannot create {}", parent.display()), e))?;
    }
    // An in-memory or URI name is not a file of ours.
    if path.as_os_str() == ":memory:" || path.to_string_lossy().starts_with("file:") {
        return Ok(());
    }
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| StoreError::caused(format!("cannot create {}", path.display()), e))?;
    for file in [path.to_owned(), sibling(path, "-wal"), sibling(path, "-shm")] {
        let readable = file.metadata().is_ok_and(|m| m.permissions().mode() & 0o077 != 0);
        if readable {
            std::fs::set_permissions(&file, Permissions::from_mode(0o600))
                .map_err(|e| StoreError::caused(format!("cannot make {} private", file.display()), e))?;
        }
    }
    Ok(())
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}
