//! A TCP proxy a test can cut: everything it forwards goes to one upstream address (PostgreSQL,
//! say), and [`TcpProxy::cut`] makes that server unreachable for a while without touching it,
//! since other tests share it. A cut drops every open connection and closes the listening port
//! (connections are refused, as to a server that stopped). Its port is below the ephemeral
//! range, so no other test's server takes it meanwhile (include `support/ports.rs` as
//! `mod ports` beside this file).

#![allow(dead_code)]

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::{
    net::{TcpListener, TcpSocket, TcpStream},
    task::{AbortHandle, JoinHandle},
};

use crate::ports::restartable_port;

/// How a cut makes the server unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// The port is closed: connections are refused, as to a server that stopped.
    Refuse,
    /// Connections are accepted and closed at once, as by a server that is stopping or
    /// starting, or a balancer with no server behind it: the client fails at once.
    Reset,
}

/// A running proxy on 127.0.0.1. Dropping it closes the port and every connection.
pub struct TcpProxy {
    pub port: u16,
    upstream: SocketAddr,
    /// While set, every connection accepted is closed at once ([`Cut::Reset`]).
    resetting: Arc<AtomicBool>,
    /// The forwarding tasks of the open connections.
    connections: Arc<Mutex<Vec<AbortHandle>>>,
    accepting: Mutex<Option<JoinHandle<()>>>,
}

impl TcpProxy {
    /// Listens on a free port and forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> TcpProxy {
        let proxy = TcpProxy {
            port: restartable_port(),
            upstream,
            resetting: Arc::default(),
            connections: Arc::default(),
            accepting: Mutex::new(None),
        };
        proxy.listen().await;
        proxy
    }

    /// `host:port` of the proxy, for a URL.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Drops every connection and refuses (or resets) new ones for `down`, then forwards again.
    /// Returns once it does.
    pub async fn cut(&self, down: Duration, how: Cut) {
        match how {
            Cut::Refuse => {
                self.close().await;
                tokio::time::sleep(down).await;
                self.listen().await;
            }
            Cut::Reset => {
                self.resetting.store(true, Ordering::SeqCst);
                self.drop_connections();
                tokio::time::sleep(down).await;
                self.resetting.store(false, Ordering::SeqCst);
            }
        }
    }

    fn drop_connections(&self) {
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    /// Stops listening (connections are refused) and drops every open connection: the client
    /// sees its connections reset, as when the server goes away.
    pub async fn close(&self) {
        let accepting = self.accepting.lock().unwrap().take();
        if let Some(accepting) = accepting {
            accepting.abort();
            // Resolves once the task, and with it the listener, is dropped.
            let _ = accepting.await;
        }
        self.drop_connections();
    }

    /// Listens (again) on the proxy's port.
    pub async fn listen(&self) {
        let listener = bind(self.port).await;
        let (upstream, connections) = (self.upstream, self.connections.clone());
        let resetting = self.resetting.clone();
        let accepting = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                if resetting.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let forward = tokio::spawn(forward(client, upstream));
                let mut open = connections.lock().unwrap();
                open.retain(|c| !c.is_finished());
                open.push(forward.abort_handle());
            }
        });
        *self.accepting.lock().unwrap() = Some(accepting);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        if let Some(accepting) = self.accepting.lock().unwrap().take() {
            accepting.abort();
        }
        self.drop_connections();
    }
}

/// Binds `port` on 127.0.0.1, trying again for a moment while the port is being released.
async fn bind(port: u16) -> TcpListener {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        match socket.bind(addr).and_then(|()| socket.listen(1024)) {
            Ok(listener) => return listener,
            Err(e) => assert!(
                tokio::time::Instant::now() < deadline,
                "the proxy cannot listen on {addr} again: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Copies both ways until either side closes; an upstream that refuses closes the client.
async fn forward(mut client: TcpStream, upstream: SocketAddr) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}
