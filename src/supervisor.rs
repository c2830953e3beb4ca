//! Runs Herald's background parts (planner, dispatcher, janitor, workers, recorder) and restarts one that
//! ends or panics, after a growing pause, while `/readyz` says which part is down.

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{sync::Notify, task::JoinSet, time::Instant};

use crate::{
    health::{Health, PartState},
    shutdown::Shutdown,
};

/// The first pause before a restart; it doubles on each quick failure, up to [`MAX_PAUSE`].
const MIN_PAUSE: Duration = Duration::from_secs(1);
const MAX_PAUSE: Duration = Duration::from_secs(30);
/// A part that ran this long before it stopped starts again from the shortest pause.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// Owns the running parts until shutdown.
#[derive(Debug)]
pub struct Supervisor {
    tasks: JoinSet<()>,
    health: Health,
    shutdown: Shutdown,
    faults: Faults,
}

impl Supervisor {
    pub fn new(health: Health, shutdown: Shutdown, faults: Faults) -> Supervisor {
        Supervisor {
            tasks: JoinSet::new(),
            health,
            shutdown,
            faults,
        }
    }

    /// Runs the future `start()` makes as `part`, and a new one whenever it ends or panics
    /// before shutdown.
    pub fn spawn<F, Fut>(&mut self, part: &'static str, start: F)
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let health = self.health.clone();
        let shutdown = self.shutdown.clone();
        let faults = self.faults.clone();
        self.tasks.spawn(async move {
            let mut pause = MIN_PAUSE;
            loop {
                health.set_part(part, PartState::Running);
                let started = Instant::now();
                let run = start();
                let fault = faults.wait(part);
                let outcome = tokio::spawn(async move {
                    tokio::select! {
                        () = run => {}
                        () = fault => panic!("{part}: a panic injected by a test"),
                    }
                })
                .await;
                if shutdown.is_triggered() {
                    break;
                }
                let why = match outcome {
                    Ok(()) => "it stopped on its own".to_owned(),
                    Err(e) => match e.try_into_panic() {
                        Ok(payload) => format!("it panicked: {}", panic_text(payload.as_ref())),
                        Err(e) => format!("it was cancelled: {e}"),
                    },
                };
                if started.elapsed() >= HEALTHY_RUN {
                    pause = MIN_PAUSE;
                }
                tracing::error!(
                    part,
                    why = %why,
                    restart_in_s = pause.as_secs(),
                    "a background part stopped; restarting it"
                );
                health.set_part(part, PartState::Restarting { why });
                tokio::select! {
                    _ = shutdown.wait() => break,
                    _ = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(MAX_PAUSE);
            }
        });
    }

    /// Waits for every part to return after shutdown was triggered.
    pub async fn join(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// A test-only way to make a running part panic, so that supervision can be tested on the real
/// application. Nothing in Herald itself calls [`Faults::panic`].
#[derive(Debug, Clone, Default)]
pub struct Faults(Arc<Mutex<HashMap<&'static str, Arc<Notify>>>>);

impl Faults {
    /// Makes `part` panic once, now if it is running.
    pub fn panic(&self, part: &'static str) {
        self.notify(part).notify_one();
    }

    fn notify(&self, part: &'static str) -> Arc<Notify> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(part)
            .or_default()
            .clone()
    }

    fn wait(&self, part: &'static str) -> impl Future<Output = ()> + Send + 'static {
        let notify = self.notify(part);
        async move { notify.notified().await }
    }
}
