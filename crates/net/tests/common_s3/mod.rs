//! A real S3-compatible server (s3s-fs, installed by scripts/install-s3-server.sh) started on a
//! free loopback port with a temporary data directory, killed when dropped.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use covenant_net::{RetryPolicy, S3Config, Store};

pub const ACCESS_KEY: &str = "covenant-test";
pub const SECRET_KEY: &str = "covenant-test-secret";

/// Where the server binary is: `COVENANT_S3_SERVER_BIN`, else the install script's cache.
pub fn server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("COVENANT_S3_SERVER_BIN") {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("COVENANT_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
                })
                .join("covenant")
        });
    cache.join("s3s-fs-0.14.1/bin/s3s-fs")
}

pub struct S3Server {
    child: Option<Child>,
    pub port: u16,
    pub root: tempfile::TempDir,
}

impl S3Server {
    /// Starts the server with one bucket; panics with instructions when it is not installed.
    pub fn start(bucket: &str) -> S3Server {
        let root = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(root.path().join(bucket)).expect("bucket dir");
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
            l.local_addr().expect("addr").port()
        };
        let mut s = S3Server {
            child: None,
            port,
            root,
        };
        s.spawn();
        s
    }

    /// Starts the server process again (same port, same data) after `stop`.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn spawn(&mut self) {
        let bin = server_bin();
        assert!(
            bin.is_file(),
            "S3 test server not found at {} — run scripts/install-s3-server.sh (or set COVENANT_S3_SERVER_BIN)",
            bin.display()
        );
        let port = self.port;
        let child = Command::new(&bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(self.root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        self.child = Some(child);
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!("S3 test server exited at start-up: {status}");
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "S3 test server did not listen on {port} within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The environment a `covenant` process needs to reach this server (`AWS_*`).
    pub fn env(&self) -> Vec<(String, String)> {
        [
            (
                "AWS_ENDPOINT_URL",
                format!("http://127.0.0.1:{}", self.port),
            ),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_string()),
            ("AWS_ALLOW_HTTP", "true".to_string()),
            ("AWS_REGION", "us-east-1".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    pub fn config(&self) -> S3Config {
        S3Config {
            endpoint: Some(format!("http://127.0.0.1:{}", self.port)),
            region: "us-east-1".into(),
            access_key_id: Some(ACCESS_KEY.into()),
            secret_access_key: Some(SECRET_KEY.into()),
            session_token: None,
            allow_http: true,
        }
    }

    pub fn store(&self, bucket: &str, prefix: &str, retry: RetryPolicy) -> Store {
        Store::s3(bucket, prefix, &self.config(), retry).expect("S3 store")
    }

    /// Path of an object's file in the server's data directory.
    pub fn object_file(&self, bucket: &str, key: &str) -> PathBuf {
        self.root.path().join(bucket).join(key)
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}
