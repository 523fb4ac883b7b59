//! The portal's sqlite database (`<data_dir>/passgate.db`, WAL), migrated at start.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

pub async fn open(path: &Path) -> Result<SqlitePool, sqlx::Error> {
    create_private(path)?;
    let options = SqliteConnectOptions::from_str("sqlite:")?
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(5))
        .foreign_keys(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await?;
    sqlx::migrate!("./migrations").run(&pool).await?;
    Ok(pool)
}

/// SQLite would create the file with the process umask (0644 under the usual 022), readable by
/// every local user, and its -wal and -shm files copy the database's mode. Sessions, reset
/// tokens and the audit trail are in it, so it is created owner-only first.
fn create_private(path: &Path) -> std::io::Result<()> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn the_database_and_its_wal_are_owner_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.db");
        let pool = super::open(&path).await.expect("db");
        sqlx::query("CREATE TABLE t (x)")
            .execute(&pool)
            .await
            .expect("write");
        for name in ["p.db", "p.db-wal", "p.db-shm"] {
            let mode = std::fs::metadata(dir.path().join(name))
                .expect(name)
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
    }
}
