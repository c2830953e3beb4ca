//! `herald healthcheck`: exit 0 when the local daemon answers /healthz, for container health checks.

use std::{process::ExitCode, time::Duration};

/// A minimal HTTP/1.0 GET, so the container image needs no curl.
pub async fn healthcheck(addr: String) -> anyhow::Result<ExitCode> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = addr.replace("0.0.0.0", "127.0.0.1");
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
