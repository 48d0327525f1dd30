//! The same backend suite against the local directory and a real S3-compatible server (s3s-fs
//! on loopback). The S3 tests fail (never skip) when the server is not installed.

mod common_s3;

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use common_s3::S3Server;
use covenant_net::{seal, EnvelopeError, Expected, Keypair, RetryPolicy, Store, StoreError};

const BUCKET: &str = "peer-bucket";

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        deadline: Duration::from_secs(3),
        attempt_timeout: Duration::from_secs(2),
        init_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(400),
    }
}

enum Backend {
    Dir(tempfile::TempDir),
    S3(S3Server),
}

struct Fixture {
    store: Store,
    backend: Backend,
}

impl Fixture {
    fn dir() -> Fixture {
        let d = tempfile::tempdir().unwrap();
        let store = Store::local(d.path()).unwrap().with_retry(fast_retry());
        Fixture {
            store,
            backend: Backend::Dir(d),
        }
    }
    fn s3() -> Fixture {
        let server = S3Server::start(BUCKET);
        let store = server.store(BUCKET, "", fast_retry());
        Fixture {
            store,
            backend: Backend::S3(server),
        }
    }
    /// The file that backs an object, to damage it behind the store's back.
    fn raw_file(&self, key: &str) -> PathBuf {
        match &self.backend {
            Backend::Dir(d) => d.path().join(key),
            Backend::S3(s) => s.object_file(BUCKET, key),
        }
    }
    /// Timestamp resolution of the backend (S3 LastModified has whole seconds).
    fn slack(&self) -> Duration {
        match &self.backend {
            Backend::Dir(_) => Duration::from_millis(50),
            Backend::S3(_) => Duration::from_millis(1100),
        }
    }
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod dir { $( #[tokio::test] async fn $name() { super::$name(super::Fixture::dir()).await } )* }
        mod s3 { $( #[tokio::test] async fn $name() { super::$name(super::Fixture::s3()).await } )* }
    };
}

both_backends!(
    put_get_head_list_delete,
    timestamps_are_the_stores,
    missing_object,
    oversized_object_rejected_before_reading,
    truncated_object_detected,
    overwrite_is_atomic_for_readers,
    invalid_keys_rejected,
);

async fn put_get_head_list_delete(f: Fixture) {
    let s = &f.store;
    s.put("w000001/uid-3.bin", Bytes::from_static(b"hello"))
        .await
        .unwrap();
    s.put("w000001/uid-4.bin", Bytes::from(vec![7u8; 100_000]))
        .await
        .unwrap();
    s.put("w000002/uid-3.bin", Bytes::from_static(b"later"))
        .await
        .unwrap();
    s.put("top.json", Bytes::from_static(b"{}")).await.unwrap();

    assert_eq!(&s.get("w000001/uid-3.bin", 5).await.unwrap()[..], b"hello");
    let (info, body) = s.get_with_info("w000001/uid-4.bin", 1 << 20).await.unwrap();
    assert_eq!(info.size, 100_000);
    assert_eq!(body.len(), 100_000);
    assert!(body.iter().all(|&b| b == 7));
    assert_eq!(s.head("w000002/uid-3.bin").await.unwrap().size, 5);

    let keys = |v: Vec<covenant_net::ObjectInfo>| v.into_iter().map(|i| i.key).collect::<Vec<_>>();
    assert_eq!(
        keys(s.list("w000001/", 100).await.unwrap()),
        ["w000001/uid-3.bin", "w000001/uid-4.bin"]
    );
    assert_eq!(
        keys(s.list("w000001/uid-4", 100).await.unwrap()),
        ["w000001/uid-4.bin"]
    );
    assert_eq!(keys(s.list("w00000", 100).await.unwrap()).len(), 3);
    assert_eq!(keys(s.list("", 100).await.unwrap()).len(), 4);
    assert!(s.list("nothing/", 100).await.unwrap().is_empty());
    assert!(matches!(
        s.list("", 2).await,
        Err(StoreError::TooMany { limit: 2, .. })
    ));

    // Overwrite replaces the whole object.
    s.put("w000001/uid-3.bin", Bytes::from_static(b"hi"))
        .await
        .unwrap();
    assert_eq!(&s.get("w000001/uid-3.bin", 100).await.unwrap()[..], b"hi");

    s.delete("w000001/uid-3.bin").await.unwrap();
    assert!(matches!(
        s.head("w000001/uid-3.bin").await,
        Err(StoreError::NotFound { .. })
    ));
    s.delete("w000001/uid-3.bin").await.unwrap(); // deleting twice is fine
    assert_eq!(
        keys(s.list("w000001/", 100).await.unwrap()),
        ["w000001/uid-4.bin"]
    );
}

async fn timestamps_are_the_stores(f: Fixture) {
    let s = &f.store;
    let before = SystemTime::now();
    s.put("a", Bytes::from_static(b"1")).await.unwrap();
    let after = SystemTime::now();
    let t1 = s.head("a").await.unwrap().last_modified;
    assert!(
        t1 + f.slack() >= before && t1 <= after + f.slack(),
        "timestamp {t1:?} outside [{before:?}, {after:?}]"
    );
    // A later upload gets a later timestamp (at the backend's resolution).
    tokio::time::sleep(f.slack() + Duration::from_millis(100)).await;
    s.put("a", Bytes::from_static(b"2")).await.unwrap();
    let t2 = s.head("a").await.unwrap().last_modified;
    assert!(t2 > t1, "second upload {t2:?} not after first {t1:?}");
    // list reports the same timestamp as head.
    let listed = s.list("a", 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].last_modified, t2);
    let (info, _) = s.get_with_info("a", 10).await.unwrap();
    assert_eq!(info.last_modified, t2);
}

async fn missing_object(f: Fixture) {
    let s = &f.store;
    let t = Instant::now();
    assert!(
        matches!(s.get("nope/x.bin", 100).await, Err(StoreError::NotFound { ref key, .. }) if key == "nope/x.bin")
    );
    assert!(matches!(
        s.head("nope/x.bin").await,
        Err(StoreError::NotFound { .. })
    ));
    // Not retried: a missing object is a final answer.
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "missing object took {:?}",
        t.elapsed()
    );
}

async fn oversized_object_rejected_before_reading(f: Fixture) {
    let s = &f.store;
    s.put("big", Bytes::from(vec![1u8; 1 << 20])).await.unwrap();
    match s.get("big", 1000).await {
        Err(StoreError::TooLarge { size, limit, .. }) => {
            assert_eq!(size, 1 << 20);
            assert_eq!(limit, 1000);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert_eq!(s.get("big", 1 << 20).await.unwrap().len(), 1 << 20);
}

async fn truncated_object_detected(f: Fixture) {
    // A peer's signed upload, then cut short in the bucket (a torn upload or a tampering owner):
    // the store hands back what is there, and the envelope check rejects it.
    let key = Keypair::from_seed([9; 32]);
    let content = vec![42u8; 10_000];
    let sealed = seal(&key, "run", 1, 5, "payload", &content).unwrap();
    f.store
        .put("w5/uid-1", Bytes::from(sealed.clone()))
        .await
        .unwrap();
    let file = f.raw_file("w5/uid-1");
    let len = std::fs::metadata(&file).unwrap().len();
    assert_eq!(len, sealed.len() as u64);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let got = f.store.get("w5/uid-1", 1 << 20).await.unwrap();
    assert_eq!(got.len() as u64, len / 2);
    let expect = Expected {
        run_id: "run",
        uid: 1,
        window: 5,
        kind: "payload",
        signer: key.public(),
    };
    assert_eq!(
        covenant_net::open(&got, &expect, 1 << 20).unwrap_err(),
        EnvelopeError::ContentChanged
    );
}

async fn overwrite_is_atomic_for_readers(f: Fixture) {
    // A writer alternates two large versions; a reader must always see one of them whole.
    let a = Bytes::from(vec![b'a'; 2 << 20]);
    let b = Bytes::from(vec![b'b'; 3 << 20]);
    f.store.put("obj", a.clone()).await.unwrap();
    let writer = {
        let s = f.store.clone();
        let (a, b) = (a.clone(), b.clone());
        tokio::spawn(async move {
            for i in 0..8 {
                s.put("obj", if i % 2 == 0 { b.clone() } else { a.clone() })
                    .await
                    .unwrap();
            }
        })
    };
    let mut reads = 0;
    while !writer.is_finished() || reads < 3 {
        match f.store.get("obj", 8 << 20).await {
            Ok(body) => {
                assert!(
                    body == a || body == b,
                    "reader saw a torn object of {} bytes",
                    body.len()
                );
                reads += 1;
            }
            // The object may change between HEAD and GET: reported, never returned half.
            Err(StoreError::Truncated { .. }) | Err(StoreError::TooLarge { .. }) => {}
            Err(StoreError::Other { .. }) => {} // e.g. a range no longer satisfiable
            Err(e) => panic!("unexpected error during concurrent overwrite: {e}"),
        }
    }
    writer.await.unwrap();
    assert!(reads >= 3);
}

async fn invalid_keys_rejected(f: Fixture) {
    for bad in ["", "../escape", "a//b", "a/../b"] {
        assert!(
            matches!(
                f.store.put(bad, Bytes::from_static(b"x")).await,
                Err(StoreError::InvalidKey { .. })
            ),
            "key {bad:?} accepted"
        );
    }
}

/// The S3 server dies mid-run: operations fail with a clear error after retrying, bounded by the
/// deadline; a restarted server on the same port and data directory serves again.
#[tokio::test]
async fn s3_server_stopped_mid_run() {
    let mut server = S3Server::start(BUCKET);
    let store = server.store(BUCKET, "run1", fast_retry());
    store
        .put("w1/x", Bytes::from_static(b"payload"))
        .await
        .unwrap();
    assert_eq!(&store.get("w1/x", 100).await.unwrap()[..], b"payload");
    server.stop();

    let deadline = fast_retry().deadline;
    for op in ["get", "put", "list"] {
        let t = Instant::now();
        let r = match op {
            "get" => store.get("w1/x", 100).await.map(|_| ()),
            "put" => store.put("w1/y", Bytes::from_static(b"z")).await,
            _ => store.list("w1/", 10).await.map(|_| ()),
        };
        let took = t.elapsed();
        match r {
            Err(StoreError::Unavailable {
                attempts,
                last_error,
                ..
            }) => {
                assert!(attempts >= 2, "{op}: not retried ({attempts} attempt)");
                assert!(!last_error.is_empty());
            }
            other => panic!("{op}: expected Unavailable, got {other:?}"),
        }
        assert!(
            took <= deadline + Duration::from_millis(500),
            "{op} took {took:?}, deadline {deadline:?}"
        );
        assert!(
            took >= Duration::from_millis(100),
            "{op} gave up after {took:?} without backing off"
        );
    }
}

/// A store URL from the environment/config file resolves to the S3 backend.
#[tokio::test]
async fn s3_config_file_and_url() {
    let server = S3Server::start(BUCKET);
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = dir.path().join("s3.json");
    std::fs::write(&cfg_path, serde_json::to_string(&server.config()).unwrap()).unwrap();
    let cfg = covenant_net::S3Config::from_file(&cfg_path).unwrap();
    assert_eq!(cfg, server.config());
    let store = Store::s3(BUCKET, "p", &cfg, fast_retry()).unwrap();
    store.put("k", Bytes::from_static(b"v")).await.unwrap();
    assert!(server.object_file(BUCKET, "p/k").is_file());
    std::fs::write(&cfg_path, "{\"endpoint\": 3}").unwrap();
    assert!(matches!(
        covenant_net::S3Config::from_file(&cfg_path),
        Err(StoreError::Config(_))
    ));
    // Wrong credentials: a clear, non-retried failure.
    let mut bad = server.config();
    bad.secret_access_key = Some("wrong".into());
    let t = Instant::now();
    let r = Store::s3(BUCKET, "", &bad, fast_retry())
        .unwrap()
        .get("p/k", 10)
        .await;
    assert!(r.is_err(), "wrong credentials accepted");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "auth failure retried for {:?}",
        t.elapsed()
    );
    assert!(matches!(Store::open("ftp://x"), Err(StoreError::Config(_))));
}

/// A server that accepts connections but never answers: every call ends with `Unavailable`
/// within the deadline instead of hanging.
#[tokio::test]
async fn s3_unresponsive_server_does_not_hang() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap(); // never accepts
    let port = listener.local_addr().unwrap().port();
    let cfg = covenant_net::S3Config {
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        region: "us-east-1".into(),
        access_key_id: Some("k".into()),
        secret_access_key: Some("s".into()),
        session_token: None,
        allow_http: true,
    };
    let retry = RetryPolicy {
        deadline: Duration::from_millis(2500),
        attempt_timeout: Duration::from_millis(800),
        init_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
    };
    let store = Store::s3(BUCKET, "", &cfg, retry).unwrap();
    let t = Instant::now();
    match store.get("x", 10).await {
        Err(StoreError::Unavailable { attempts, .. }) => {
            assert!(attempts >= 2, "{attempts} attempts")
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(1500),
        "gave up early after {took:?}"
    );
    assert!(
        took <= retry.deadline + Duration::from_millis(500),
        "hung for {took:?}"
    );
    drop(listener);
}

/// A loopback proxy in front of the S3 server that forwards each connection's first
/// `cut_after` response bytes and then drops it: objects arrive truncated in transit.
fn start_cutting_proxy(upstream_port: u16, cut_after: usize) -> u16 {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { break };
            let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", upstream_port)) else {
                break;
            };
            let (Ok(mut c_in), Ok(mut u_out)) = (client.try_clone(), upstream.try_clone()) else {
                break;
            };
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c_in, &mut u_out);
                let _ = u_out.shutdown(Shutdown::Write);
            });
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                let mut sent = 0usize;
                while let Ok(n) = upstream.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let allow = cut_after.saturating_sub(sent).min(n);
                    if client.write_all(&buf[..allow]).is_err() {
                        break;
                    }
                    sent += allow;
                    if allow < n {
                        break;
                    }
                }
                let _ = client.shutdown(Shutdown::Both);
                let _ = upstream.shutdown(Shutdown::Both);
            });
        }
    });
    port
}

/// An object cut short in transit is never returned: retried, then a clear error that says so.
#[tokio::test]
async fn s3_object_truncated_in_transit() {
    let server = S3Server::start(BUCKET);
    let direct = server.store(BUCKET, "", fast_retry());
    direct
        .put("big", Bytes::from(vec![5u8; 300_000]))
        .await
        .unwrap();
    direct
        .put("small", Bytes::from_static(b"fits"))
        .await
        .unwrap();
    let proxy_port = start_cutting_proxy(server.port, 60_000);
    let mut cfg = server.config();
    cfg.endpoint = Some(format!("http://127.0.0.1:{proxy_port}"));
    let via_proxy = Store::s3(BUCKET, "", &cfg, fast_retry()).unwrap();
    // Small objects still pass through the proxy intact.
    assert_eq!(&via_proxy.get("small", 100).await.unwrap()[..], b"fits");
    let t = Instant::now();
    match via_proxy.get("big", 1 << 20).await {
        Err(StoreError::Unavailable {
            last_error,
            attempts,
            ..
        }) => {
            assert!(
                last_error.contains("truncated"),
                "error does not say truncated: {last_error}"
            );
            assert!(attempts >= 2);
        }
        Ok(b) => panic!("a truncated download of {} bytes was returned", b.len()),
        Err(e) => panic!("expected Unavailable(truncated), got {e}"),
    }
    assert!(t.elapsed() <= fast_retry().deadline + Duration::from_millis(500));
}
