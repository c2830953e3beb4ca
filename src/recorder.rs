//! Group commit: one task writes the outcomes of every worker of the process together.
//!
//! Each email's outcome used to be its own transaction, and so its own fsync: at a few thousand
//! emails a second PostgreSQL spent its time waiting for the disk, one email at a time. The
//! workers now hand their outcomes to the [`Recorder`], which takes everything that arrived while
//! its last write was in progress (at least [`WINDOW`]'s worth) and writes it with one statement
//! in one transaction ([`Store::record_many`]). Under load a write carries hundreds of outcomes;
//! alone, an email waits at most [`WINDOW`] longer.
//!
//! The promises of the fenced claims hold: each row checks its own claim token, and a row whose
//! claim was taken over is reported back to its worker as not recorded. A write that fails as a
//! whole because of one row's value (a data or constraint error, [`belongs_to_a_row`]) is tried
//! again row by row, so one bad row never holds back the others. Any other failure (PostgreSQL
//! unreachable, restarting, a connection cut) is every row's: each worker gets the error at once
//! and tries again itself until its lease is nearly spent (see the worker module). Going row by row
//! then would only make each row wait for the pool's acquire timeout in turn, long enough for the
//! leases to run out and the emails to go again. A worker acks its job in Redis only after the
//! answer, so a job is never acked before its outcome is committed.
//!
//! The task runs under the [`crate::supervisor::Supervisor`] as the part `recorder`: should it
//! end or panic, it is started again on the same queue of outcomes ([`Outcomes`]).

use std::{sync::Arc, time::Duration};

use tokio::sync::{Mutex, mpsc, oneshot};

use crate::store::{Recording, Store};

/// How long the recorder waits for more outcomes after the first one arrives.
pub const WINDOW: Duration = Duration::from_millis(2);

/// The most outcomes one write carries.
pub const MAX_GROUP: usize = 1_000;

type Reply = oneshot::Sender<sqlx::Result<bool>>;

/// A handle to the process's recorder task. Cheap to clone; the task ends when the last handle
/// is dropped.
#[derive(Debug, Clone)]
pub struct Recorder {
    tx: mpsc::Sender<(Recording, Reply)>,
}

/// The outcomes waiting for the recorder task: kept apart from the task, so that a task that
/// ended or panicked can be started again by the supervisor on the same queue ([`Outcomes::run`]).
/// A panic loses the answers of the group being written (their workers see an error and try
/// again); everything still queued waits for the next run.
#[derive(Debug, Clone)]
pub struct Outcomes {
    rx: Arc<Mutex<mpsc::Receiver<(Recording, Reply)>>>,
}

impl Outcomes {
    /// Records outcomes until every [`Recorder`] handle is dropped.
    pub async fn run(self, store: Store) {
        let mut rx = self.rx.lock().await;
        run(store, &mut rx).await;
    }
}

impl Recorder {
    /// A recorder and the queue its task reads; run [`Outcomes::run`] (under the supervisor).
    pub fn new() -> (Recorder, Outcomes) {
        let (tx, rx) = mpsc::channel(MAX_GROUP * 4);
        let outcomes = Outcomes {
            rx: Arc::new(Mutex::new(rx)),
        };
        (Recorder { tx }, outcomes)
    }

    /// Starts the recorder task on the current runtime, unsupervised (for tests and tools).
    pub fn start(store: Store) -> Recorder {
        let (recorder, outcomes) = Recorder::new();
        tokio::spawn(outcomes.run(store));
        recorder
    }

    /// Records one outcome with the others that arrive meanwhile. `Ok(false)`: the claim was
    /// taken over and nothing was written. `Err`: it could not be written (PostgreSQL is down,
    /// say); a recorder that has stopped (the process is shutting down) answers `PoolClosed`.
    pub async fn record(&self, r: Recording) -> sqlx::Result<bool> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((r, reply))
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        answer.await.map_err(|_| sqlx::Error::PoolClosed)?
    }
}

async fn run(store: Store, rx: &mut mpsc::Receiver<(Recording, Reply)>) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while rx.recv_many(&mut group, MAX_GROUP).await > 0 {
        let deadline = tokio::time::Instant::now() + WINDOW;
        while group.len() < MAX_GROUP {
            let room = MAX_GROUP - group.len();
            tokio::select! {
                n = rx.recv_many(&mut group, room) => if n == 0 { break },
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        write(&store, std::mem::take(&mut group)).await;
    }
}

/// Writes a group and answers each worker. A failure that belongs to one row is narrowed down
/// row by row; any other failure is answered to every worker of the group at once (each tries
/// again), and so is the rest of a row-by-row pass that meets one.
async fn write(store: &Store, group: Vec<(Recording, Reply)>) {
    let (rows, replies): (Vec<Recording>, Vec<Reply>) = group.into_iter().unzip();
    let e = match store.record_many(&rows).await {
        Ok(recorded) => {
            for (reply, ok) in replies.into_iter().zip(recorded) {
                let _ = reply.send(Ok(ok));
            }
            return;
        }
        Err(e) => e,
    };
    if rows.len() == 1 {
        // Its own error, as it is: the worker tells a row's error from an outage by it.
        if let Some(reply) = replies.into_iter().next() {
            let _ = reply.send(Err(e));
        }
        return;
    }
    if !belongs_to_a_row(&e) {
        tracing::debug!(rows = rows.len(), error = %e, "cannot record a group of outcomes; every worker of the group tries again");
        answer_all(replies, &e);
        return;
    }
    tracing::debug!(rows = rows.len(), error = %e, "cannot record a group of outcomes because of one row; recording them one by one");
    let mut pending = rows.into_iter().zip(replies);
    while let Some((row, reply)) = pending.next() {
        match store.record(&row).await {
            Err(e) if !belongs_to_a_row(&e) => {
                let (_, rest): (Vec<Recording>, Vec<Reply>) = pending.unzip();
                answer_all(std::iter::once(reply).chain(rest), &e);
                return;
            }
            result => {
                let _ = reply.send(result);
            }
        }
    }
}

/// Answers every worker with a copy of `e`.
fn answer_all(replies: impl IntoIterator<Item = Reply>, e: &sqlx::Error) {
    for reply in replies {
        let _ = reply.send(Err(shared(e)));
    }
}

/// A copy of a group's error for each of its workers (`sqlx::Error` is not `Clone`).
fn shared(e: &sqlx::Error) -> sqlx::Error {
    let kind = match e {
        sqlx::Error::Io(io) => io.kind(),
        _ => std::io::ErrorKind::Other,
    };
    sqlx::Error::Io(std::io::Error::new(
        kind,
        format!("cannot record a group of outcomes: {e}"),
    ))
}

/// Whether `e` may be about one row, so that the other rows of the group would go through without
/// it: an error the server answered about the statement (a data exception such as text
/// PostgreSQL will not store, a constraint, a trigger refusing the row, a value over a limit), or
/// a value that could not be encoded. Anything about the server or the session (an I/O error, the
/// pool, a connection, the server shutting down or starting, no resources, a deadlock or
/// serialization failure, an internal error) would fail every row alike, so the group goes back
/// to its workers instead.
pub fn belongs_to_a_row(e: &sqlx::Error) -> bool {
    match e {
        // The server answered: the statement failed on what it was given, unless the answer is
        // about the server or the session (a connection exception, no resources, a shutdown or
        // start-up, a system or internal error) or asks for the whole transaction again.
        sqlx::Error::Database(db) => !db.code().is_some_and(|code| {
            matches!(code.get(..2), Some("08" | "40" | "53" | "57" | "58" | "XX"))
        }),
        sqlx::Error::Encode(_) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_rows_own_errors_are_narrowed_down_row_by_row() {
        let refused = sqlx::Error::Io(std::io::ErrorKind::ConnectionRefused.into());
        assert!(!belongs_to_a_row(&refused));
        assert!(!belongs_to_a_row(&sqlx::Error::PoolTimedOut));
        assert!(!belongs_to_a_row(&sqlx::Error::PoolClosed));
        assert!(belongs_to_a_row(&sqlx::Error::Encode("bad".into())));
        // What the server answered, by SQLSTATE class: about the statement and its row...
        for code in ["22021", "23505", "P0001", "54000", "42P01"] {
            assert!(belongs_to_a_row(&Answered::error(Some(code))), "{code}");
        }
        assert!(belongs_to_a_row(&Answered::error(None)));
        // ...or about the server or the session, which every row would meet alike.
        for code in [
            "08006", "40001", "40P01", "53300", "57P01", "58030", "XX000",
        ] {
            assert!(!belongs_to_a_row(&Answered::error(Some(code))), "{code}");
        }
        let copy = shared(&refused);
        assert!(
            matches!(&copy, sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused)
        );
    }

    /// An answer of the server with SQLSTATE `code`, as sqlx reports it.
    #[derive(Debug)]
    struct Answered(Option<&'static str>);

    impl Answered {
        fn error(code: Option<&'static str>) -> sqlx::Error {
            sqlx::Error::Database(Box::new(Answered(code)))
        }
    }

    impl std::fmt::Display for Answered {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "SQLSTATE {:?}", self.0)
        }
    }

    impl std::error::Error for Answered {}

    impl sqlx::error::DatabaseError for Answered {
        fn message(&self) -> &str {
            "answered"
        }
        fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
            self.0.map(std::borrow::Cow::Borrowed)
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }
}
