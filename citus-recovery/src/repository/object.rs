//! [`ObjectRepository`]: a repository in an S3 (or S3-compatible) bucket, on the `object_store`
//! crate.
//!
//! Credentials come only from the environment, the way the AWS tools read them
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, web identity, the
//! container's or the instance's role), never from the configuration, and never appear in
//! [`Repository::describe`], `Debug` or an error. Profiles in `~/.aws` are not read
//! (`object_store` does not). The credentials need `s3:GetObject`, `s3:PutObject`,
//! `s3:DeleteObject` and `s3:ListBucket`: without the last, S3 answers a missing object with
//! 403, which is reported as [`RepoError::Unavailable`], never as [`RepoError::NotFound`].
//!
//! Create-only puts use S3's conditional write (`If-None-Match: *`), which AWS S3 applies
//! atomically: of many writers of one key exactly one creates it. Some S3-compatible servers
//! check and write in two steps (moto 5.2 does: in the tests two processes racing on one key
//! both "created" it about once in 20 tries, the second overwriting the first), so against
//! such a server create-only holds across processes only as far as the server makes it hold.
//! Within one process, puts to one key are serialised here, so that there the outcome never
//! depends on the server's atomicity.
//!
//! Streamed puts ([`Repository::put_stream`]) shorter than one part are one conditional put;
//! longer ones are a multipart upload, which S3 shows only once it is completed: the key is
//! checked to be free before the upload starts and again before it is completed, and a failed
//! stream aborts the upload. A process killed half-way leaves an incomplete upload, invisible
//! to readers, whose parts the bucket's lifecycle rule (`AbortIncompleteMultipartUpload`)
//! should remove.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey, S3ConditionalPut};
use object_store::path::Path;
use object_store::{
    ClientConfigKey, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig,
    WriteMultipart,
};
use serde::Deserialize;

use super::{GetStream, Key, ObjectMeta, PutOutcome, PutStream, RepoError, Repository};

/// The part size of a streamed put's multipart upload (S3 needs at least 5 MiB but for the
/// last); a stream shorter than one part is stored with one conditional put instead.
const PART_SIZE: usize = 8 << 20;

/// How many parts of one streamed put are uploaded at once.
const PARTS_IN_FLIGHT: usize = 2;

/// Where an S3 repository is, as the configuration's `repository` object gives it
/// (`{"type": "s3", "bucket": ..., "prefix": ..., "region": ..., "endpoint": ..., "allowHttp": ...}`).
/// Holds no credentials on purpose.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct S3Settings {
    /// The bucket; it must exist.
    pub bucket: String,
    /// The folder inside the bucket that holds the repository (`""` for the bucket's root); a
    /// [`Key`], so `a/b` but never `../x` or `/x`.
    #[serde(default)]
    pub prefix: String,
    /// The region (`eu-west-1`); `None` takes `AWS_REGION`/`AWS_DEFAULT_REGION`, else `us-east-1`.
    #[serde(default)]
    pub region: Option<String>,
    /// Another S3-speaking server (`http://127.0.0.1:9000`); `None` is AWS S3.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Whether a plain `http://` endpoint is allowed (test servers); off by default.
    #[serde(default)]
    pub allow_http: bool,
}

/// A repository in an S3 bucket under a prefix: object `prefix/<key>` holds key `<key>`.
pub struct ObjectRepository {
    store: AmazonS3,
    /// The repository's folder in the bucket, or the bucket's root.
    prefix: Key,
    description: String,
    /// Strings that must never reach an error message (the secret key, the session token).
    secrets: Vec<String>,
    /// One lock per key being put, so that puts of one key from this process are serialised.
    put_locks: Mutex<HashMap<Key, Arc<tokio::sync::Mutex<()>>>>,
    /// Whether the bucket was seen to exist (so a bodiless 404 means a missing object).
    bucket_seen: AtomicBool,
}

impl fmt::Debug for ObjectRepository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the store's own Debug: it may hold credentials.
        f.debug_struct("ObjectRepository")
            .field("repository", &self.description)
            .finish_non_exhaustive()
    }
}

/// Retries inside one call: a few quick ones for a dropped connection or a 5xx, bounded so that a
/// stopped server is reported within seconds (PostgreSQL retries archive commands itself).
fn retry_config() -> RetryConfig {
    RetryConfig {
        max_retries: 3,
        retry_timeout: Duration::from_secs(30),
        ..RetryConfig::default()
    }
}

impl ObjectRepository {
    /// Opens the S3 repository that `settings` describe, with credentials from the environment
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, or the instance's
    /// role). Makes no request: a wrong bucket or credentials show at the first call, as
    /// [`RepoError::Unavailable`].
    pub fn s3(settings: &S3Settings) -> Result<ObjectRepository, RepoError> {
        Self::build(settings, AmazonS3Builder::from_env())
    }

    /// Like [`ObjectRepository::s3`] with the given credentials and nothing from the
    /// environment: for tests, which run in parallel and cannot share process-wide variables.
    #[doc(hidden)]
    pub fn s3_with_credentials(
        settings: &S3Settings,
        access_key_id: &str,
        secret_access_key: &str,
    ) -> Result<ObjectRepository, RepoError> {
        Self::build(
            settings,
            AmazonS3Builder::new()
                .with_access_key_id(access_key_id)
                .with_secret_access_key(secret_access_key),
        )
    }

    fn build(
        settings: &S3Settings,
        builder: AmazonS3Builder,
    ) -> Result<ObjectRepository, RepoError> {
        let mut description = format!("s3://{}", settings.bucket);
        if !settings.prefix.is_empty() {
            description.push('/');
            description.push_str(&settings.prefix);
        }
        if let Some(endpoint) = &settings.endpoint {
            description.push_str(&format!(" at {endpoint}"));
        }
        let invalid = |detail: String| RepoError::Unavailable {
            repository: description.clone(),
            action: "open",
            key: Key::root(),
            detail,
        };
        if settings.bucket.is_empty() {
            return Err(invalid("the bucket name is empty: set \"bucket\"".into()));
        }
        let prefix = Key::new(&settings.prefix).map_err(|e| {
            invalid(format!(
                "the prefix is not a plain folder name ({e}); use parts like \"prod-eu/cluster1\""
            ))
        })?;
        let mut builder = builder;
        // Our timeouts unless the environment sets its own (AWS_TIMEOUT, ...); set key by key,
        // as with_client_options would drop the environment's proxy and other client settings.
        for (key, value) in [
            (ClientConfigKey::ConnectTimeout, "5s"),
            (ClientConfigKey::Timeout, "300s"),
        ] {
            let key = AmazonS3ConfigKey::Client(key);
            if builder.get_config_value(&key).is_none() {
                builder = builder.with_config(key, value);
            }
        }
        let mut builder = builder
            .with_bucket_name(&settings.bucket)
            .with_allow_http(settings.allow_http)
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            .with_retry(retry_config());
        if let Some(region) = &settings.region {
            builder = builder.with_region(region);
        }
        if let Some(endpoint) = &settings.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        let secrets = [AmazonS3ConfigKey::SecretAccessKey, AmazonS3ConfigKey::Token]
            .iter()
            .filter_map(|k| builder.get_config_value(k))
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>();
        let store = builder.build().map_err(|e| {
            invalid(format!(
                "{} (check the repository settings and the AWS_* environment variables)",
                redact(&e.to_string(), &secrets)
            ))
        })?;
        Ok(ObjectRepository {
            store,
            prefix,
            description,
            secrets,
            put_locks: Mutex::new(HashMap::new()),
            bucket_seen: AtomicBool::new(false),
        })
    }

    fn path(&self, key: &Key) -> Path {
        let full = match (self.prefix.as_str(), key.as_str()) {
            ("", k) => k.to_string(),
            (p, "") => p.to_string(),
            (p, k) => format!("{p}/{k}"),
        };
        // A checked Key is always a valid object_store path: no empty, `.` or `..` part, no
        // character it would escape.
        Path::parse(full).expect("a checked key is a valid object path")
    }

    /// The key of an object listed at `path`, or `None` for an object outside the repository
    /// or with a name no key can have (left there by something else).
    fn key_of(&self, path: &Path) -> Option<Key> {
        let raw = path.as_ref();
        let rest = if self.prefix.as_str().is_empty() {
            raw
        } else {
            raw.strip_prefix(self.prefix.as_str())?.strip_prefix('/')?
        };
        Key::new(rest).ok().filter(|k| *k != Key::root())
    }

    fn error(&self, action: &'static str, key: &Key, e: object_store::Error) -> RepoError {
        // One line: servers answer with multi-line XML.
        let text = redact(&error_chain(&e), &self.secrets)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        if matches!(e, object_store::Error::NotFound { .. }) && !text.contains("NoSuchBucket") {
            return RepoError::NotFound { key: key.clone() };
        }
        let credentials_refused = text.contains("403 Forbidden")
            || [
                "InvalidAccessKeyId",
                "SignatureDoesNotMatch",
                "InvalidToken",
                "ExpiredToken",
                "AccessDenied",
            ]
            .iter()
            .any(|code| text.contains(&format!("<Code>{code}</Code>")));
        let hint = if credentials_refused {
            "access denied: check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) \
             and the bucket's permissions; "
        } else if text.contains("NoSuchBucket") {
            "the bucket does not exist: create it or fix \"bucket\"; "
        } else if text.contains("URL scheme is not allowed") {
            "the endpoint is plain http: set \"allowHttp\": true (test servers only) or use https; "
        } else if text.contains("onnect") || text.contains("timed out") {
            "cannot reach the S3 server: check \"endpoint\" and the network; "
        } else {
            ""
        };
        RepoError::Unavailable {
            repository: self.description.clone(),
            action,
            key: key.clone(),
            detail: format!("{hint}{text}"),
        }
    }

    /// The error for a failed `get`/`head`/`delete`: [`RepoError::NotFound`] only when the
    /// object is missing, never when the bucket is (an archive-get must not answer "no such
    /// WAL" for a mistyped bucket). A 404 without a body (HEAD has none) is checked by listing
    /// the repository once.
    async fn missing_or_error(
        &self,
        action: &'static str,
        key: &Key,
        e: object_store::Error,
    ) -> RepoError {
        let err = self.error(action, key, e);
        let RepoError::NotFound { .. } = err else {
            return err;
        };
        if self.bucket_seen.load(Ordering::Relaxed) {
            return err;
        }
        match self
            .store
            .list_with_delimiter(Some(&self.path(&Key::root())))
            .await
        {
            Ok(_) => {
                self.bucket_seen.store(true, Ordering::Relaxed);
                err
            }
            Err(e) => {
                let mut bucket_err = self.error(action, key, e);
                if let RepoError::NotFound { .. } = bucket_err {
                    bucket_err = RepoError::Unavailable {
                        repository: self.description.clone(),
                        action,
                        key: key.clone(),
                        detail: "the bucket does not exist: create it or fix \"bucket\"".into(),
                    };
                }
                bucket_err
            }
        }
    }

    fn put_lock(&self, key: &Key) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.put_locks.lock().unwrap_or_else(|p| p.into_inner());
        // Drop the locks nobody holds, so the map stays as small as the puts in flight.
        locks.retain(|_, l| Arc::strong_count(l) > 1);
        locks.entry(key.clone()).or_default().clone()
    }

    async fn put_create_locked(&self, key: &Key, data: Bytes) -> Result<PutOutcome, RepoError> {
        let path = self.path(key);
        // Conditional put, then (when something is there) compare; a delete between the two
        // steps sends us round again, a bounded number of times.
        for _ in 0..3 {
            let opts = PutOptions {
                mode: PutMode::Create,
                ..PutOptions::default()
            };
            match self
                .store
                .put_opts(&path, PutPayload::from(data.clone()), opts)
                .await
            {
                Ok(_) => return Ok(PutOutcome::Created),
                Err(object_store::Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(self.error("put", key, e)),
            }
            match self.get(key).await {
                Ok(there) if there == data => return Ok(PutOutcome::AlreadyThere),
                Ok(_) => return Err(RepoError::Conflict { key: key.clone() }),
                Err(RepoError::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(RepoError::Unavailable {
            repository: self.description.clone(),
            action: "put",
            key: key.clone(),
            detail: "the object kept appearing and disappearing (another process creating and \
                     deleting it); try again"
                .into(),
        })
    }
}

/// The error and its sources as one line: object_store's top message alone often hides the
/// server's answer.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// `text` without the secrets and without any presigned-URL signature or credential.
fn redact(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        out = out.replace(s.as_str(), "[redacted]");
    }
    for param in [
        "X-Amz-Signature=",
        "X-Amz-Credential=",
        "X-Amz-Security-Token=",
        "Signature=",
    ] {
        let mut from = 0;
        while let Some(pos) = out[from..].find(param) {
            let start = from + pos + param.len();
            let end = out[start..]
                .find(['&', ' ', '"', '\'', '<'])
                .map_or(out.len(), |e| start + e);
            out.replace_range(start..end, "[redacted]");
            from = start + "[redacted]".len();
        }
    }
    out
}

/// Logs one request at debug level (`CITUS_RECOVERY_LOG=citus_recovery::repository=debug`):
/// what was asked, of which key, how long it took and whether it failed, never a secret (the
/// key and the outcome's kind only).
async fn logged<T>(
    op: &str,
    key: &Key,
    request: impl std::future::Future<Output = Result<T, RepoError>>,
) -> Result<T, RepoError> {
    let started = std::time::Instant::now();
    let r = request.await;
    tracing::debug!(
        op,
        key = key.as_str(),
        ms = started.elapsed().as_secs_f64() * 1e3,
        ok = r.is_ok(),
        "object store request"
    );
    r
}

#[async_trait]
impl Repository for ObjectRepository {
    fn describe(&self) -> String {
        self.description.clone()
    }

    async fn put_create(&self, key: &Key, data: Bytes) -> Result<PutOutcome, RepoError> {
        logged("put_create", key, async {
            let lock = self.put_lock(key);
            let _held = lock.lock().await;
            self.put_create_locked(key, data).await
        })
        .await
    }

    async fn get(&self, key: &Key) -> Result<Bytes, RepoError> {
        logged("get", key, async {
            let result = match self.store.get(&self.path(key)).await {
                Ok(r) => r,
                Err(e) => return Err(self.missing_or_error("get", key, e).await),
            };
            result.bytes().await.map_err(|e| self.error("get", key, e))
        })
        .await
    }

    async fn put_stream(&self, key: &Key, mut data: PutStream) -> Result<u64, RepoError> {
        logged("put_stream", key, async {
            let lock = self.put_lock(key);
            let _held = lock.lock().await;
            let abandoned = |e: std::io::Error| RepoError::Abandoned {
                key: key.clone(),
                detail: e.to_string(),
            };
            if self.head(key).await?.is_some() {
                return Err(RepoError::Conflict { key: key.clone() });
            }
            let path = self.path(key);
            // The first part, to learn whether one conditional put is enough.
            let mut first = Vec::new();
            let mut first_len = 0;
            let mut ended = true;
            while let Some(piece) = data.next().await {
                let piece = piece.map_err(abandoned)?;
                first_len += piece.len();
                first.push(piece);
                if first_len >= PART_SIZE {
                    ended = false;
                    break;
                }
            }
            if ended {
                let opts = PutOptions {
                    mode: PutMode::Create,
                    ..PutOptions::default()
                };
                return match self
                    .store
                    .put_opts(&path, PutPayload::from_iter(first), opts)
                    .await
                {
                    Ok(_) => Ok(first_len as u64),
                    Err(object_store::Error::AlreadyExists { .. }) => {
                        Err(RepoError::Conflict { key: key.clone() })
                    }
                    Err(e) => Err(self.error("put", key, e)),
                };
            }
            let upload = self
                .store
                .put_multipart(&path)
                .await
                .map_err(|e| self.error("put", key, e))?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
            let mut total = first_len as u64;
            for piece in first {
                writer.put(piece);
            }
            let failed = loop {
                if let Err(e) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
                    break self.error("put", key, e);
                }
                match data.next().await {
                    Some(Ok(piece)) => {
                        total += piece.len() as u64;
                        writer.put(piece);
                    }
                    Some(Err(e)) => break abandoned(e),
                    None => match self.head(key).await {
                        // Someone created the key meanwhile: never replace it.
                        Ok(Some(_)) => break RepoError::Conflict { key: key.clone() },
                        Err(e) => break e,
                        Ok(None) => {
                            return match writer.finish().await {
                                Ok(_) => Ok(total),
                                Err(e) => Err(self.error("put", key, e)),
                            }
                        }
                    },
                }
            };
            // Best effort: an upload left behind is invisible anyway.
            let _ = writer.abort().await;
            Err(failed)
        })
        .await
    }

    async fn get_stream(&self, key: &Key) -> Result<GetStream, RepoError> {
        logged("get_stream", key, async {
            let result = match self.store.get(&self.path(key)).await {
                Ok(r) => r,
                Err(e) => return Err(self.missing_or_error("get", key, e).await),
            };
            let (repository, secrets, key) =
                (self.description.clone(), self.secrets.clone(), key.clone());
            Ok(result
                .into_stream()
                .map(move |piece| {
                    piece.map_err(|e| RepoError::Unavailable {
                        repository: repository.clone(),
                        action: "get",
                        key: key.clone(),
                        detail: redact(&error_chain(&e), &secrets)
                            .split_whitespace()
                            .collect::<Vec<_>>()
                            .join(" "),
                    })
                })
                .boxed())
        })
        .await
    }

    async fn head(&self, key: &Key) -> Result<Option<ObjectMeta>, RepoError> {
        logged("head", key, async {
            match self.store.head(&self.path(key)).await {
                Ok(meta) => Ok(Some(ObjectMeta {
                    key: key.clone(),
                    size: meta.size,
                })),
                Err(e) => match self.missing_or_error("head", key, e).await {
                    RepoError::NotFound { .. } => Ok(None),
                    e => Err(e),
                },
            }
        })
        .await
    }

    async fn list(&self, prefix: &Key) -> Result<Vec<ObjectMeta>, RepoError> {
        logged("list", prefix, async {
            let under = self.path(prefix);
            let listed = self
                .store
                .list((!under.as_ref().is_empty()).then_some(&under));
            // S3 lists `prefix/...` only; an object named exactly `prefix` is in the contract
            // too. Asked at the same time as the listing: one round trip, not two.
            let exact = async {
                match prefix != &Key::root() {
                    true => self.head(prefix).await,
                    false => Ok(None),
                }
            };
            let listing = listed
                .map_err(|e| match self.error("list", prefix, e) {
                    // A listing is never "not found": the bucket is missing.
                    RepoError::NotFound { .. } => RepoError::Unavailable {
                        repository: self.description.clone(),
                        action: "list",
                        key: prefix.clone(),
                        detail: "the bucket does not exist: create it or fix \"bucket\"".into(),
                    },
                    e => e,
                })
                .try_filter_map(|meta| {
                    futures::future::ready(Ok(self
                        .key_of(&meta.location)
                        .filter(|k| k.starts_with(prefix))
                        .map(|key| ObjectMeta {
                            key,
                            size: meta.size,
                        })))
                })
                .try_collect::<Vec<ObjectMeta>>();
            let (listing, exact) = futures::future::join(listing, exact).await;
            let mut out = listing?;
            out.extend(exact?);
            out.sort_by(|a, b| a.key.cmp(&b.key));
            out.dedup_by(|a, b| a.key == b.key);
            Ok(out)
        })
        .await
    }

    async fn delete(&self, key: &Key) -> Result<(), RepoError> {
        logged("delete", key, async {
            match self.store.delete(&self.path(key)).await {
                Ok(()) => Ok(()),
                Err(e) => match self.missing_or_error("delete", key, e).await {
                    RepoError::NotFound { .. } => Ok(()),
                    e => Err(e),
                },
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(prefix: &str) -> S3Settings {
        S3Settings {
            bucket: "b".into(),
            prefix: prefix.into(),
            region: Some("eu-west-1".into()),
            endpoint: Some("http://127.0.0.1:9".into()),
            allow_http: true,
        }
    }

    #[test]
    fn settings_read_camel_case_and_refuse_unknown_names() {
        let s: S3Settings = serde_json::from_str(
            r#"{"bucket": "citus-backups", "prefix": "prod-eu", "region": "eu-west-1",
                "endpoint": "http://127.0.0.1:9000", "allowHttp": true}"#,
        )
        .unwrap();
        assert_eq!(
            s,
            S3Settings {
                bucket: "citus-backups".into(),
                prefix: "prod-eu".into(),
                region: Some("eu-west-1".into()),
                endpoint: Some("http://127.0.0.1:9000".into()),
                allow_http: true,
            }
        );
        let s: S3Settings = serde_json::from_str(r#"{"bucket": "b"}"#).unwrap();
        assert_eq!(
            (s.prefix.as_str(), s.allow_http, s.region),
            ("", false, None)
        );
        let e = serde_json::from_str::<S3Settings>(r#"{"bucket": "b", "allowHTTP": true}"#)
            .unwrap_err();
        assert!(e.to_string().contains("allowHTTP"), "{e}");
        // A credential in the config is an error, not silently ignored.
        assert!(
            serde_json::from_str::<S3Settings>(r#"{"bucket": "b", "secretAccessKey": "x"}"#)
                .is_err()
        );
    }

    #[test]
    fn description_and_debug_hold_no_secret() {
        let repo = ObjectRepository::s3_with_credentials(
            &settings("prod-eu"),
            "AKIDEXAMPLE",
            "SECRET-sentinel-1234",
        )
        .unwrap();
        assert_eq!(repo.describe(), "s3://b/prod-eu at http://127.0.0.1:9");
        let debug = format!("{repo:?}");
        assert!(!debug.contains("SECRET-sentinel"), "{debug}");
        assert_eq!(repo.secrets, vec!["SECRET-sentinel-1234".to_string()]);
    }

    #[test]
    fn prefixes_that_are_not_plain_folders_are_refused() {
        for bad in ["../x", "/x", "a//b", "a b"] {
            let e = ObjectRepository::s3_with_credentials(&settings(bad), "a", "b").unwrap_err();
            assert!(e.to_string().contains("prefix"), "{bad}: {e}");
        }
        let mut s = settings("");
        s.bucket.clear();
        assert!(ObjectRepository::s3_with_credentials(&s, "a", "b").is_err());
    }

    #[test]
    fn keys_map_under_the_prefix_and_back() {
        let repo = ObjectRepository::s3_with_credentials(&settings("p/q"), "a", "b").unwrap();
        let k = Key::new("wal/n1/x=1+2%").unwrap();
        let path = repo.path(&k);
        assert_eq!(path.as_ref(), "p/q/wal/n1/x=1+2%");
        assert_eq!(repo.key_of(&path), Some(k));
        assert_eq!(repo.key_of(&Path::parse("p/qq/x").unwrap()), None);
        assert_eq!(repo.key_of(&Path::parse("p/q").unwrap()), None);
        let root = ObjectRepository::s3_with_credentials(&settings(""), "a", "b").unwrap();
        assert_eq!(root.path(&Key::new("a/b").unwrap()).as_ref(), "a/b");
    }

    #[test]
    fn redaction_removes_secrets_and_signatures() {
        let text = "PUT http://h/b/k?X-Amz-Credential=AKID%2F2024&X-Amz-Signature=abcdef&x=1 \
                    failed: key s3cr3t token tok3n";
        let out = redact(text, &["s3cr3t".into(), "tok3n".into()]);
        assert!(!out.contains("s3cr3t") && !out.contains("tok3n"), "{out}");
        assert!(!out.contains("abcdef") && !out.contains("AKID%2F"), "{out}");
        assert!(out.contains("&x=1"), "{out}");
    }
}
