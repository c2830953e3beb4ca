//! The mark `herald migrate-state` leaves in a state file it moved into PostgreSQL, and the
//! refusal of an embedded Herald to start on such a file.
//!
//! After a move the deliveries live in PostgreSQL; the file still holds them too, with the jobs of
//! its queue. An embedded Herald started on it again (an old service unit, a habit) would send
//! what it still holds queued a second time, and plan fires the new home plans as well. So the
//! move writes a row into `herald_moved` before it commits into PostgreSQL (a move that then
//! fails takes its mark back), and [`crate::store::Store::open_embedded`], which the daemon and
//! every CLI command open the file through, refuses a marked file, saying where the state went
//! and how to go back on purpose. The table is made by the move itself: a file never moved has
//! none, and its schema is untouched.

use chrono::{DateTime, Utc};

use super::Lite;

/// Where a moved file's state went, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovedTo {
    /// The target's URL without its password.
    pub target: String,
    pub at: DateTime<Utc>,
}

impl Lite {
    /// Marks the file as moved into `target` (a URL already stripped of its password).
    pub async fn mark_moved(&self, target: &str, at: DateTime<Utc>) -> sqlx::Result<()> {
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS herald_moved (target TEXT NOT NULL, at TEXT NOT NULL)",
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO herald_moved (target, at) VALUES ($1, $2)")
            .bind(target)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }

    /// Takes the mark back (the move it was written for did not commit).
    pub async fn unmark_moved(&self) -> sqlx::Result<()> {
        sqlx::query("DROP TABLE IF EXISTS herald_moved")
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// The last move of this file, if it was moved.
    pub async fn moved_to(&self) -> sqlx::Result<Option<MovedTo>> {
        let marked: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'herald_moved')",
        )
        .fetch_one(&self.writer)
        .await?;
        if !marked {
            return Ok(None);
        }
        let row: Option<(String, DateTime<Utc>)> =
            sqlx::query_as("SELECT target, at FROM herald_moved ORDER BY rowid DESC LIMIT 1")
                .fetch_optional(&self.writer)
                .await?;
        Ok(row.map(|(target, at)| MovedTo { target, at }))
    }
}

/// The refusal to start on a moved file: what happened, what to do.
pub fn refusal(file: &std::path::Path, moved: &MovedTo) -> anyhow::Error {
    let file = file.display();
    anyhow::anyhow!(
        "the state file {file} was moved into PostgreSQL at {} on {} (herald migrate-state): its \
         deliveries live there now, and an embedded Herald on this file would send what it still \
         holds queued a second time. Start Herald with DATABASE_URL and REDIS_URL set (the \
         servers home). If that move never took place or you mean to go back to this file, \
         remove the mark: sqlite3 {file} 'DROP TABLE herald_moved'",
        moved.target,
        moved.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{source::Source, store::Store};

    #[tokio::test]
    async fn a_moved_file_is_refused_naming_the_target_until_its_mark_is_dropped() {
        let dir = std::env::temp_dir().join(format!("herald-moved-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("herald.db");
        let url = format!("sqlite://{}", path.display());
        let open = || async {
            let source = Source::connect(&url, 1).await.unwrap();
            Store::open_embedded(&path, source).await
        };

        let store = open().await.expect("a new file opens");
        let lite = store.lite().unwrap();
        assert_eq!(lite.moved_to().await.unwrap(), None);
        let at = "2026-12-06T11:40:00Z".parse().unwrap();
        lite.mark_moved("postgres://herald@db.example/herald", at)
            .await
            .unwrap();
        drop(store);

        let refused = open().await.expect_err("a moved file is refused");
        let text = format!("{refused:#}");
        for part in [
            "was moved into PostgreSQL at postgres://herald@db.example/herald",
            "2026-12-06T11:40:00Z",
            "DATABASE_URL and REDIS_URL",
            "DROP TABLE herald_moved",
        ] {
            assert!(text.contains(part), "no {part:?} in: {text}");
        }

        // Going back on purpose: the mark dropped, the file opens again.
        let lite = Lite::open(&path).await.unwrap();
        lite.unmark_moved().await.unwrap();
        drop(lite);
        open().await.expect("opens once the mark is gone");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
