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
//! whole is tried again row by row, so one bad row never holds back the others; each worker then
//! learns its own row's fate. A worker acks its job in Redis only after the answer, so a job is
//! never acked before its outcome is committed.
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

/// Writes a group, falling back to one row at a time when the group fails as a whole, and
/// answers each worker.
async fn write(store: &Store, group: Vec<(Recording, Reply)>) {
    let (rows, replies): (Vec<Recording>, Vec<Reply>) = group.into_iter().unzip();
    match store.record_many(&rows).await {
        Ok(recorded) => {
            for (reply, ok) in replies.into_iter().zip(recorded) {
                let _ = reply.send(Ok(ok));
            }
        }
        Err(e) if rows.len() == 1 => {
            if let Some(reply) = replies.into_iter().next() {
                let _ = reply.send(Err(e));
            }
        }
        Err(e) => {
            tracing::debug!(rows = rows.len(), error = %e, "cannot record a group of outcomes; recording them one by one");
            for (row, reply) in rows.into_iter().zip(replies) {
                let _ = reply.send(store.record(&row).await);
            }
        }
    }
}
