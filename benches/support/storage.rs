//! What Herald's state costs on disk per sent email: the `deliveries` table (heap, TOAST and
//! indexes) and the `delivery_attempts` table, measured after `VACUUM FULL` so that the figure
//! is what the rows take once the space of their dead versions is reused, not how much churn
//! the run left behind.

use sqlx::PgConnection;

/// Bytes on disk, divided by the sent deliveries.
#[derive(Debug, Clone, Copy)]
pub struct Storage {
    pub sent: i64,
    /// Everything below, per sent email.
    pub total: f64,
    /// The `deliveries` heap (with its TOAST), per sent email.
    pub heap: f64,
    /// The `deliveries` indexes, per sent email.
    pub indexes: f64,
    /// `delivery_attempts` with its indexes, per sent email.
    pub attempts: f64,
    /// The average stored size of a payload (`pg_column_size`, after any compression).
    pub payload: f64,
}

impl Storage {
    /// Compacts Herald's two big tables in the database `conn` is connected to and measures
    /// them. The daemon must be stopped (`VACUUM FULL` takes an exclusive lock).
    pub async fn measure(conn: &mut PgConnection) -> anyhow::Result<Storage> {
        for table in ["herald.deliveries", "herald.delivery_attempts"] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("VACUUM FULL ANALYZE {table}")))
                .execute(&mut *conn)
                .await?;
        }
        let (sent, payload): (i64, Option<f64>) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE status = 'sent'),
                    avg(pg_column_size(payload))::float8
             FROM herald.deliveries",
        )
        .fetch_one(&mut *conn)
        .await?;
        let (heap, indexes, attempts): (i64, i64, i64) = sqlx::query_as(
            "SELECT pg_table_size('herald.deliveries'), pg_indexes_size('herald.deliveries'),
                    pg_total_relation_size('herald.delivery_attempts')",
        )
        .fetch_one(&mut *conn)
        .await?;
        let per = |bytes: i64| bytes as f64 / sent.max(1) as f64;
        Ok(Storage {
            sent,
            total: per(heap + indexes + attempts),
            heap: per(heap),
            indexes: per(indexes),
            attempts: per(attempts),
            payload: payload.unwrap_or(0.0),
        })
    }

    /// One `key=value` line, in the benches' style.
    pub fn line(&self, head: &str) -> String {
        format!(
            "{head} sent={} bytes_per_sent_email={:.0} heap={:.0} indexes={:.0} attempts={:.0} payload_avg={:.0}",
            self.sent, self.total, self.heap, self.indexes, self.attempts, self.payload
        )
    }
}
