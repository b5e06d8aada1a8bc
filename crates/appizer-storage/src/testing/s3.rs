//! [`S3Emulator`]: `moto_server` (PyPI `moto[server]`, beside the test Python of
//! `APPIZER_TEST_PYTHON`, required under CI) on a free loopback port, a bucket in it,
//! and a way to make it stop answering and answer again ([`S3Emulator::pause`],
//! [`S3Emulator::resume`]) while it keeps what it holds. And
//! [`check_file_backend`]: what every event file backend does.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;

use crate::events::files::{FileBackend, S3Settings};

/// An S3 emulator of the test's own; killed when dropped.
pub struct S3Emulator {
    child: Child,
    port: u16,
}

/// The test Python's `moto_server`, or `None` (skipped) outside CI without one.
fn moto_server() -> Option<std::path::PathBuf> {
    let under_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
    match std::env::var("APPIZER_TEST_PYTHON") {
        Ok(python) => {
            let program = std::path::Path::new(&python).with_file_name("moto_server");
            assert!(
                program.exists(),
                "{} is missing: pip install -r scripts/test-requirements.txt",
                program.display()
            );
            Some(program)
        }
        Err(_) if under_ci => panic!("APPIZER_TEST_PYTHON must be set under CI"),
        Err(_) => {
            eprintln!("skipped: set APPIZER_TEST_PYTHON (with moto[server]) to run the S3 cases");
            None
        }
    }
}

impl S3Emulator {
    /// Starts the emulator and waits until it answers.
    pub fn start() -> Option<Self> {
        let program = moto_server()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let emulator = Self { child, port };
        let started = Instant::now();
        while emulator.request("GET", "/").is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "moto_server did not answer on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(emulator)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates `bucket` (any credentials are accepted).
    pub fn create_bucket(&self, bucket: &str) {
        let status = self.request("PUT", &format!("/{bucket}"));
        assert_eq!(status, Some(200), "creating bucket {bucket}");
    }

    /// Settings for objects under `prefix` of `bucket`, path-style, with a short
    /// request timeout (a paused emulator fails requests quickly).
    pub fn settings(&self, bucket: &str, prefix: &str) -> S3Settings {
        S3Settings {
            bucket: bucket.into(),
            prefix: prefix.into(),
            endpoint: self.endpoint(),
            region: "us-east-1".into(),
            access_key_id: appizer_core::secret::SecretString::new("test"),
            secret_access_key: appizer_core::secret::SecretString::new("test"),
            path_style: true,
            request_timeout: Duration::from_secs(2),
        }
    }

    /// Stops the emulator answering (SIGSTOP): connections open, requests hang.
    pub fn pause(&self) {
        self.signal(rustix::process::Signal::STOP);
    }

    /// Lets it answer again (SIGCONT), with everything it held.
    pub fn resume(&self) {
        self.signal(rustix::process::Signal::CONT);
    }

    fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).expect("a pid");
        rustix::process::kill_process(pid, signal).expect("signal moto_server");
    }

    /// The status of a bodiless request, or `None` if the emulator does not answer.
    fn request(&self, method: &str, path: &str) -> Option<u16> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .ok()?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).ok()?;
        std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
    }
}

impl Drop for S3Emulator {
    fn drop(&mut self) {
        self.resume();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What every event file backend does: whole files stored, read, listed with when
/// they were written, and deleted (twice is no error).
pub async fn check_file_backend(files: &dyn FileBackend) {
    let path = "project=1/date=2026-01-02/p0-a.parquet";
    files
        .put(path, Bytes::from_static(b"PAR1 whole"))
        .await
        .unwrap();
    assert_eq!(&files.get(path).await.unwrap()[..], b"PAR1 whole");
    let listed = files.list().await.unwrap();
    assert_eq!(
        listed.iter().map(|l| l.path.as_str()).collect::<Vec<_>>(),
        vec![path]
    );
    let age = Utc::now() - listed[0].modified;
    assert!(age.num_seconds().abs() < 60, "written {age:?} ago");
    files.delete(path).await.unwrap();
    files.delete(path).await.unwrap();
    assert!(files.list().await.unwrap().is_empty());
    assert!(files.get(path).await.is_err());
}
