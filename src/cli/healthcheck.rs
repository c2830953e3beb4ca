//! `herald healthcheck`: exit 0 when the local daemon answers /healthz, for container health checks.

use std::{process::ExitCode, time::Duration};

/// A minimal HTTP/1.0 GET, so the container image needs no curl.
pub async fn healthcheck(addr: String) -> anyhow::Result<ExitCode> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = reachable(&addr);
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(&addr).await?;
        stream
            .write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(
            response.starts_with(b"HTTP/1.0 200") || response.starts_with(b"HTTP/1.1 200"),
        )
    };
    match tokio::time::timeout(Duration::from_secs(3), probe).await {
        Ok(Ok(true)) => Ok(ExitCode::SUCCESS),
        Ok(Ok(false)) => {
            eprintln!("{addr} answered /healthz with an error");
            Ok(ExitCode::FAILURE)
        }
        Ok(Err(e)) => {
            eprintln!("cannot reach {addr}: {e}");
            Ok(ExitCode::FAILURE)
        }
        Err(_) => {
            eprintln!("{addr} did not answer within 3 s");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Where to reach a daemon listening on `addr`: an unspecified address (every interface,
/// `0.0.0.0` or `[::]`) is reached on the loopback address of its family; any other address or
/// host name as it is.
fn reachable(addr: &str) -> String {
    match addr.parse::<std::net::SocketAddr>() {
        Ok(mut a) if a.ip().is_unspecified() => {
            a.set_ip(match a.ip() {
                std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
            a.to_string()
        }
        _ => addr.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::reachable;

    #[test]
    fn every_interface_is_reached_on_the_loopback_of_its_family() {
        assert_eq!(reachable("0.0.0.0:8080"), "127.0.0.1:8080");
        assert_eq!(reachable("[::]:8080"), "[::1]:8080");
        assert_eq!(reachable("10.0.0.5:8080"), "10.0.0.5:8080");
        assert_eq!(reachable("localhost:8080"), "localhost:8080");
    }
}
