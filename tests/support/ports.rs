//! Ports a test holds for a server that is down, so that connections to them are refused and no
//! other test's server, started meanwhile on "any free port", takes them.

#![allow(dead_code)]

/// A port bound by a socket that does not listen. Connections to it are refused, as they are to
/// a stopped server, and the kernel gives the port to nobody else while it is held: the socket
/// is bound without `SO_REUSEADDR`, so even a listener that sets it cannot share the port, and
/// binding to port 0 skips it. Drop it (or call [`HeldPort::release`]) just before the server
/// starts on the port again.
///
/// Picking a free port and dropping it (`TcpListener::bind(":0")`) is not enough for a test that
/// keeps a server down for seconds: tests run in parallel, each binding port 0 for its own
/// servers, and one of them may be given the port.
pub struct HeldPort {
    socket: tokio::net::TcpSocket,
    port: u16,
}

impl HeldPort {
    /// A free port on 127.0.0.1, held.
    pub fn any() -> HeldPort {
        HeldPort::hold(0).expect("a free port on 127.0.0.1")
    }

    /// Holds `port` on 127.0.0.1 (say, the port of a server that was just stopped).
    pub fn hold(port: u16) -> std::io::Result<HeldPort> {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(std::net::SocketAddr::from(([127, 0, 0, 1], port)))?;
        let port = socket.local_addr()?.port();
        Ok(HeldPort { socket, port })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Lets the port go and returns it, for the server about to start on it.
    pub fn release(self) -> u16 {
        let port = self.port;
        drop(self.socket);
        port
    }
}

#[cfg(test)]
mod tests {
    use super::HeldPort;

    #[tokio::test]
    async fn a_held_port_refuses_connections_and_no_listener_can_take_it() {
        let held = HeldPort::any();
        let addr = ("127.0.0.1", held.port());
        let refused = tokio::net::TcpStream::connect(addr).await.unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
        // tokio's listener sets SO_REUSEADDR, as most servers do.
        assert!(tokio::net::TcpListener::bind(addr).await.is_err());
        let port = held.release();
        assert!(
            tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .is_ok()
        );
    }
}
