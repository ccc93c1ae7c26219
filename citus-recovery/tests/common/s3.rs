//! A real S3-speaking server for tests: moto (`scripts/moto-s3.py`, in the virtual environment
//! `.venv-moto` that `scripts/setup.sh --tests` makes) on 127.0.0.1 and a free port, killed when the
//! [`MotoS3`] is dropped (also when the test panics) or when the test process dies (the helper
//! exits when its standard input closes).

#![allow(dead_code)] // each test binary uses a different part

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use citus_recovery::repository::{ObjectRepository, S3Settings};

/// The repository's root folder.
fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate is in the workspace")
        .to_path_buf()
}

/// The Python that has moto: `CITUS_RECOVERY_MOTO_PYTHON`, else `.venv-moto/bin/python`.
fn moto_python() -> Result<PathBuf, String> {
    let python = std::env::var_os("CITUS_RECOVERY_MOTO_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv-moto/bin/python"));
    if !python.is_file() {
        return Err(format!(
            "no S3 test server: {} is missing (run `bash scripts/setup.sh --tests`, which installs \
             moto[server] from PyPI into .venv-moto)",
            python.display()
        ));
    }
    Ok(python)
}

/// Whether a test that cannot get its S3 server must fail rather than skip: under
/// `CITUS_RECOVERY_REQUIRE_S3` or `CITUS_RECOVERY_REQUIRE_POSTGRES` (CI sets the latter).
pub fn s3_required() -> bool {
    [
        "CITUS_RECOVERY_REQUIRE_S3",
        "CITUS_RECOVERY_REQUIRE_POSTGRES",
    ]
    .iter()
    .any(|v| std::env::var(v).is_ok_and(|v| !v.is_empty() && v != "0"))
}

/// Returns early from a test, printing why, when moto is not installed; fails instead when
/// [`s3_required`].
#[macro_export]
macro_rules! moto_or_skip {
    ($buckets:expr, $auth:expr) => {
        match s3::MotoS3::start($buckets, $auth) {
            Ok(server) => server,
            Err(reason) if !s3::s3_required() => {
                eprintln!(
                    "SKIPPED: {reason} (CITUS_RECOVERY_REQUIRE_S3=1 or \
                     CITUS_RECOVERY_REQUIRE_POSTGRES=1 makes this a failure)"
                );
                return;
            }
            Err(reason) => panic!("the S3 test server is required here: {reason}"),
        }
    };
}

/// A running moto S3 server with its buckets.
pub struct MotoS3 {
    child: Option<Child>,
    /// The address it listens on: 127.0.0.1, or a test namespace bridge's.
    host: String,
    port: u16,
    buckets: Vec<String>,
    auth: bool,
    /// The access key id that the server accepts.
    pub access_key_id: String,
    /// Its secret.
    pub secret_access_key: String,
}

impl MotoS3 {
    /// Starts a server with `buckets` made. With `auth`, it checks signatures against a user it
    /// made (whose keys are in the fields); without, it takes any credentials.
    pub fn start(buckets: &[&str], auth: bool) -> Result<MotoS3, String> {
        Self::start_on("127.0.0.1", buckets, auth)
    }

    /// Like [`Self::start`], listening on `host` (a test namespace bridge's 10.231.x.1, which
    /// every namespace host reaches).
    pub fn start_on(host: &str, buckets: &[&str], auth: bool) -> Result<MotoS3, String> {
        let mut server = MotoS3 {
            child: None,
            host: host.into(),
            port: 0,
            buckets: buckets.iter().map(|b| b.to_string()).collect(),
            auth,
            access_key_id: String::new(),
            secret_access_key: String::new(),
        };
        // A port can be taken between choosing and binding: try a few.
        let mut last = String::new();
        for _ in 0..3 {
            server.port = free_port();
            match server.spawn() {
                Ok(()) => return Ok(server),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn spawn(&mut self) -> Result<(), String> {
        let python = moto_python()?;
        let mut cmd = Command::new(python);
        cmd.arg(repo_root().join("scripts/moto-s3.py"))
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--host")
            .arg(&self.host);
        for b in &self.buckets {
            cmd.arg("--bucket").arg(b);
        }
        if self.auth {
            cmd.arg("--auth");
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start moto: {e}"))?;
        let mut line = String::new();
        let read =
            std::io::BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line);
        let creds: Option<serde_json::Value> = serde_json::from_str(&line).ok();
        let creds = match (read, creds) {
            (Ok(_), Some(c)) => c,
            (r, _) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "moto did not start on {}:{} ({r:?}, said {line:?})",
                    self.host, self.port
                ));
            }
        };
        self.access_key_id = creds["accessKeyId"].as_str().unwrap_or_default().into();
        self.secret_access_key = creds["secretAccessKey"].as_str().unwrap_or_default().into();
        self.child = Some(child);
        Ok(())
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's URL.
    pub fn endpoint(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }

    /// Settings for a repository in `bucket` under `prefix` on this server.
    pub fn settings(&self, bucket: &str, prefix: &str) -> S3Settings {
        S3Settings {
            bucket: bucket.into(),
            prefix: prefix.into(),
            region: Some("us-east-1".into()),
            endpoint: Some(self.endpoint()),
            allow_http: true,
        }
    }

    /// A repository in `bucket` under `prefix`, with the credentials the server accepts.
    pub fn repository(&self, bucket: &str, prefix: &str) -> ObjectRepository {
        ObjectRepository::s3_with_credentials(
            &self.settings(bucket, prefix),
            &self.access_key_id,
            &self.secret_access_key,
        )
        .expect("valid settings")
    }

    /// Stops the server (its objects are gone: moto keeps them in memory).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with empty buckets; only without `auth` do the
    /// old credentials still work.
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop();
        self.spawn()
    }
}

impl Drop for MotoS3 {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}
