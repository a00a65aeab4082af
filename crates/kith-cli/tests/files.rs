//! The data folder and the database files are private to the user kith runs as: they hold key
//! hashes, signing secrets and outbound write keys.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use kith_store::sqlite::{SqliteOptions, SqliteStore};
use kith_store::Store;

fn mode(path: &Path) -> u32 {
    path.metadata().unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

#[tokio::test]
async fn the_data_folder_and_every_database_file_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let path = data.join("kith.db");
    let store = SqliteStore::open(&SqliteOptions::new(&path)).unwrap();
    store.create_workspace("Acme").await.unwrap();
    assert_eq!(mode(&data), 0o700, "the folder");
    for name in ["kith.db", "kith.db-wal", "kith.db-shm"] {
        assert_eq!(mode(&data.join(name)), 0o600, "{name}, while the store is open");
    }
}

#[tokio::test]
async fn files_left_readable_by_an_earlier_version_are_tightened() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kith.db");
    drop(SqliteStore::open(&SqliteOptions::new(&path)).unwrap());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let store = SqliteStore::open(&SqliteOptions::new(&path)).unwrap();
    store.create_workspace("Acme").await.unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&dir.path().join("kith.db-wal")), 0o600);
}

#[test]
fn kith_migrate_creates_them_private() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("new");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_kith"))
        .arg("--data-dir")
        .arg(&data)
        .arg("migrate")
        .env_remove("KITH_CONFIG")
        .env_remove("KITH_DATABASE_URL")
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("kith.db")), 0o600);
}
