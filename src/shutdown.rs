//! A cloneable "stop now" signal shared by the long-running loops.

use tokio::sync::watch;

#[derive(Clone, Debug)]
pub struct Shutdown(watch::Receiver<bool>);

/// The sending half: `trigger()` stops every loop holding a `Shutdown`.
#[derive(Debug)]
pub struct Trigger(watch::Sender<bool>);

pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Shutdown(rx))
}

impl Trigger {
    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }
}

impl Shutdown {
    /// Resolves once shutdown has been triggered (or the trigger was dropped).
    pub async fn wait(&self) {
        let mut rx = self.0.clone();
        let _ = rx.wait_for(|stop| *stop).await;
    }

    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }
}
