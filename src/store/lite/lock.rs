//! One process per state file: an exclusive lock on `<file>.lock`, held for the life of the
//! process, with the holder's pid written in it so that a second process can say whose it is.
//!
//! SQLite itself would let two processes share the file, but Herald's embedded mode keeps the
//! gate (rate limits, pauses, the circuit) and the queue's wake-ups in the process: two of them
//! would each send at the provider's full rate and never see each other's pauses. Several
//! processes need PostgreSQL and Redis. The lock is the operating system's (`flock`), so it goes
//! with the process however it ends, SIGKILL included, and a stale pid left in the file means
//! nothing. It is a file of its own, not the database: SQLite's locks on the database are POSIX
//! record locks, which the process loses when it closes *any* descriptor of that file.

use std::{
    fs::{File, OpenOptions, TryLockError},
    io::{Read, Seek, Write},
    path::{Path, PathBuf},
};

use anyhow::Context;

/// The lock on a state file, released when dropped (or when the process ends).
#[derive(Debug)]
pub struct StateLock {
    _file: File,
    path: PathBuf,
}

impl StateLock {
    /// Takes the lock of `db` (the state file) or says which process holds it.
    pub fn take(db: &Path) -> anyhow::Result<StateLock> {
        let path = lock_path(db);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| {
                format!(
                    "cannot open {} (the lock beside the state file); is its folder writable?",
                    path.display()
                )
            })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid); // only for the message
                let holder = match pid.trim() {
                    "" => "another process".to_owned(),
                    pid => format!("another Herald (pid {pid})"),
                };
                anyhow::bail!(
                    "{holder} is already using {}; the embedded mode runs one process per file. \
                     While it runs, use its API or dashboard; stop it first for a command that \
                     opens the file. Several processes need PostgreSQL and Redis (DATABASE_URL \
                     and REDIS_URL)",
                    db.display()
                );
            }
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()));
            }
        }
        file.set_len(0)?;
        file.rewind()?;
        write!(file, "{}", std::process::id())?;
        file.flush()?;
        Ok(StateLock { _file: file, path })
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// `herald.db` → `herald.db.lock`.
pub fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_file_is_refused_with_the_first_ones_pid() {
        let dir = std::env::temp_dir().join(format!("herald-lock-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("herald.db");
        let first = StateLock::take(&db).unwrap();
        let refused = StateLock::take(&db).unwrap_err().to_string();
        assert!(
            refused.contains(&format!("pid {}", std::process::id())),
            "{refused}"
        );
        assert!(refused.contains("herald.db"), "{refused}");
        drop(first);
        let again = StateLock::take(&db).expect("free once the first is dropped");
        assert_eq!(again.path(), lock_path(&db));
        drop(again);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
