//! Ports for servers a test takes down: held while down, so that connections are refused and no
//! other test's server, started meanwhile on "any free port", takes them; or picked where no such
//! server is ever put.

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

/// A free port on 127.0.0.1 outside the kernel's ephemeral range, for a server a test stops and
/// starts again on the same port. Tests bind port 0 for all their other servers and clients, and
/// the kernel picks those from the ephemeral range only (`ip_local_port_range`), so none of them
/// can be given this port while its server is down. A server that was killed may leave
/// connections in TIME_WAIT on its port, so [`HeldPort`] cannot hold it across a restart; this
/// can. Two tests could still pick the same port: each checks it is free, at random.
pub fn restartable_port() -> u16 {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral_low.max(10_001));
    let span = u128::from(high - low);
    let start = uuid::Uuid::new_v4().as_u128() % span;
    (0..span)
        .map(|i| low + ((start + i) % span) as u16)
        .find(|&port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok())
        .expect("a free port below the ephemeral range")
}

/// A port on 127.0.0.1 where no connection can be opened, as behind a firewall that drops
/// packets: a listener that never accepts, its accept queue filled by connections held here.
/// The kernel drops every further SYN, so a connect neither succeeds nor is refused: it waits
/// until the client's own timeout. Dropping it frees the port.
pub struct Blackhole {
    _listener: tokio::net::TcpListener,
    _queued: Vec<tokio::net::TcpStream>,
    port: u16,
}

impl Blackhole {
    pub async fn start() -> Blackhole {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket
            .bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
            .unwrap();
        let listener = socket.listen(0).unwrap();
        let port = listener.local_addr().unwrap().port();
        // A connection to 127.0.0.1 that the kernel takes completes within microseconds; one
        // not done in 200 ms had its SYN dropped (the next try would come after a second).
        let mut queued = Vec::new();
        while let Ok(Ok(conn)) = tokio::time::timeout(
            std::time::Duration::from_millis(200),
            tokio::net::TcpStream::connect(("127.0.0.1", port)),
        )
        .await
        {
            queued.push(conn);
            assert!(
                queued.len() < 64,
                "the accept queue of port {port} never fills"
            );
        }
        Blackhole {
            _listener: listener,
            _queued: queued,
            port,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

#[cfg(test)]
mod tests {
    use super::HeldPort;

    #[tokio::test]
    async fn a_connect_to_a_blackhole_neither_succeeds_nor_is_refused() {
        let hole = super::Blackhole::start().await;
        let connect = tokio::net::TcpStream::connect(("127.0.0.1", hole.port()));
        let waited = tokio::time::timeout(std::time::Duration::from_secs(1), connect).await;
        assert!(waited.is_err(), "{waited:?}");
    }

    #[tokio::test]
    async fn a_held_port_refuses_connections_and_no_listener_can_take_it() {
        let held = HeldPort::any();
        let addr = ("127.0.0.1", held.port());
        let refused = tokio::net::TcpStream::connect(addr).await.unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
        // tokio's listener sets SO_REUSEADDR, as most servers do.
        assert!(tokio::net::TcpListener::bind(addr).await.is_err());
        let port = held.release();
        // Released, it binds again, unless another test's server took it the moment it was
        // free (tests run side by side): then something listens there, which a port still held
        // by a socket that does not listen never does.
        let rebound = tokio::net::TcpListener::bind(("127.0.0.1", port)).await;
        assert!(
            rebound.is_ok()
                || tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok(),
            "port {port} is still held after release"
        );
    }

    #[test]
    fn a_restartable_port_is_free_and_below_the_ephemeral_range() {
        let port = super::restartable_port();
        assert!(port >= 10_000);
        let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
        let low: u16 = range.split_whitespace().next().unwrap().parse().unwrap();
        assert!(port < low, "{port} is in the ephemeral range {range}");
    }
}
