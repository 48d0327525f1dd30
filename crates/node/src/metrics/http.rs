//! The metrics endpoint: a small HTTP/1.1 responder on the node's I/O runtime. `GET` (or
//! `HEAD`) `/metrics` gets the metrics (Prometheus text 0.0.4, or OpenMetrics when the `Accept`
//! header asks for it) with the chain height read just before; any other path a 404. One
//! request per connection, bounded in size, time and number at once.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Format, Metrics};
use crate::env::Chain;

/// Largest request head read.
const MAX_HEAD: usize = 8 << 10;
/// A client has this long to send its request and read the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Scrapes answered at once; more connections wait to be accepted.
const MAX_CLIENTS: usize = 8;

/// Why the metrics endpoint could not be started.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("binding the metrics endpoint {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("listening for metrics scrapes: {0}")]
    Listen(#[source] std::io::Error),
    #[error("writing the metrics address to {}: {reason}", path.display())]
    AddrFile { path: PathBuf, reason: String },
}

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET /metrics` (`body`: false for `HEAD`).
    Metrics {
        format: Format,
        body: bool,
    },
    NotFound,
    MethodNotAllowed,
    BadRequest,
}

/// Routes an HTTP/1.x request head (the request line and headers).
pub fn route(head: &str) -> Route {
    let mut lines = head.split("\r\n");
    let mut parts = lines.next().unwrap_or("").split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Route::BadRequest;
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return Route::BadRequest;
    }
    let path = target.split('?').next().unwrap_or(target);
    if path != "/metrics" {
        return Route::NotFound;
    }
    let body = match method {
        "GET" => true,
        "HEAD" => false,
        _ => return Route::MethodNotAllowed,
    };
    let accept = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("accept"))
        .map_or("", |(_, v)| v);
    Route::Metrics {
        format: Format::from_accept(accept),
        body,
    }
}

/// A whole HTTP/1.1 response (the connection closes after it).
fn response(status: &str, content_type: &str, body: &str, with_body: bool) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n",
        body.len()
    );
    if status.starts_with("405") {
        r.push_str("Allow: GET, HEAD\r\n");
    }
    r.push_str("\r\n");
    let mut r = r.into_bytes();
    if with_body {
        r.extend_from_slice(body.as_bytes());
    }
    r
}

/// Binds `addr` and answers scrapes on `rt` for as long as it runs; returns the bound address
/// (a port 0 becomes the one the system chose).
pub fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    chain: Arc<dyn Chain>,
    rt: &tokio::runtime::Handle,
) -> Result<SocketAddr, MetricsError> {
    let std_listener =
        std::net::TcpListener::bind(addr).map_err(|source| MetricsError::Bind { addr, source })?;
    let bound = std_listener.local_addr().map_err(MetricsError::Listen)?;
    std_listener
        .set_nonblocking(true)
        .map_err(MetricsError::Listen)?;
    let listener = {
        let _in_rt = rt.enter();
        tokio::net::TcpListener::from_std(std_listener).map_err(MetricsError::Listen)?
    };
    rt.spawn(accept_loop(listener, metrics, chain));
    Ok(bound)
}

/// Binds the endpoint, serves it and writes the bound address to `addr_file` (for scripts and
/// tests that asked for port 0).
pub fn start(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    chain: Arc<dyn Chain>,
    rt: &tokio::runtime::Handle,
    addr_file: &Path,
) -> Result<SocketAddr, MetricsError> {
    let bound = serve(addr, metrics, chain, rt)?;
    crate::spec::write_atomic(addr_file, format!("{bound}\n").as_bytes()).map_err(|e| {
        MetricsError::AddrFile {
            path: addr_file.to_path_buf(),
            reason: format!("{e:#}"),
        }
    })?;
    Ok(bound)
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    chain: Arc<dyn Chain>,
) {
    let clients = Arc::new(tokio::sync::Semaphore::new(MAX_CLIENTS));
    loop {
        let Ok(permit) = clients.clone().acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, _)) => {
                let (metrics, chain) = (metrics.clone(), chain.clone());
                tokio::spawn(async move {
                    let _ =
                        tokio::time::timeout(CLIENT_TIMEOUT, answer(stream, metrics, chain)).await;
                    drop(permit);
                });
            }
            // Out of file descriptors and the like: try again shortly.
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Reads one request and answers it.
async fn answer(
    mut stream: tokio::net::TcpStream,
    metrics: Arc<Metrics>,
    chain: Arc<dyn Chain>,
) -> std::io::Result<()> {
    let head = read_head(&mut stream).await?;
    let reply = match route(&head) {
        Route::Metrics { format, body } => {
            // The chain may be a remote one read with blocking calls.
            let height = tokio::task::spawn_blocking(move || chain.block()).await;
            if let Ok(h) = height {
                metrics.set_chain_height(h);
            }
            response(
                "200 OK",
                format.content_type(),
                &metrics.encode(format),
                body,
            )
        }
        Route::NotFound => response(
            "404 Not Found",
            "text/plain",
            "not found; try /metrics\n",
            true,
        ),
        Route::MethodNotAllowed => response(
            "405 Method Not Allowed",
            "text/plain",
            "GET or HEAD only\n",
            true,
        ),
        Route::BadRequest => response("400 Bad Request", "text/plain", "bad request\n", true),
    };
    stream.write_all(&reply).await?;
    stream.shutdown().await
}

/// The request head: up to the blank line, at most [`MAX_HEAD`] bytes.
async fn read_head(stream: &mut tokio::net::TcpStream) -> std::io::Result<String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < MAX_HEAD {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_routed() {
        let get = |target: &str, accept: &str| {
            route(&format!(
                "GET {target} HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\n\r\n"
            ))
        };
        let plain = Route::Metrics {
            format: Format::Prometheus,
            body: true,
        };
        assert_eq!(get("/metrics", "*/*"), plain);
        assert_eq!(get("/metrics?x=1", "text/plain"), plain);
        assert_eq!(
            get(
                "/metrics",
                "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
            ),
            Route::Metrics {
                format: Format::OpenMetrics,
                body: true
            }
        );
        assert_eq!(get("/", ""), Route::NotFound);
        assert_eq!(get("/metrics/x", ""), Route::NotFound);
        assert_eq!(
            route("HEAD /metrics HTTP/1.0\r\n\r\n"),
            Route::Metrics {
                format: Format::Prometheus,
                body: false
            }
        );
        assert_eq!(
            route("POST /metrics HTTP/1.1\r\n\r\n"),
            Route::MethodNotAllowed
        );
        for bad in [
            "",
            "GET",
            "GET /metrics",
            "GET metrics HTTP/1.1",
            "\u{0}\u{1}",
        ] {
            assert_eq!(route(bad), Route::BadRequest, "{bad:?}");
        }
        let r = String::from_utf8(response("404 Not Found", "text/plain", "no\n", true)).unwrap();
        assert!(r.starts_with("HTTP/1.1 404 Not Found\r\n"), "{r}");
        assert!(
            r.contains("Content-Length: 3\r\n") && r.ends_with("\r\n\r\nno\n"),
            "{r}"
        );
    }
}
