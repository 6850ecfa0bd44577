//! The `s3:` block store: one object per block in an S3 bucket, through
//! rust-s3 (reference `s3_blockstore.py`).
//!
//! - Object key `<organization>/<block uuid with dashes>` ([`object_name`]).
//! - A custom endpoint (`s3:http\://host\:port:…`) is addressed path-style
//!   (`<endpoint>/<bucket>/<key>`), as S3-compatible servers expect; without
//!   one, AWS is addressed virtual-host style.
//! - Uploads carry `Content-MD5` (rust-s3 adds it to every `PutObject`): S3
//!   checks it, and buckets with object locking refuse uploads without it.
//! - One `reqwest` client per store (inside the rust-s3 `Bucket`), so
//!   connections are pooled and reused across blocks.
//! - Every call is bounded (`super::DEFAULT_CALL_TIMEOUT` in the server);
//!   rust-s3 retries reads once on transient failures within that bound.
//! - rust-s3 is built with `fail-on-err`: any non-2xx answer is an error, a
//!   missing object is `HttpFailWithBody(404, _)` (rust-s3#74, #386).

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use parsec_protocol::types::*;
use s3::creds::Credentials;
use s3::error::S3Error;
use s3::{Bucket, Region};

#[cfg(test)]
use super::DEFAULT_CALL_TIMEOUT;
use super::{BlockStore, BlockStoreError, object_name, with_deadline};

/// What `s3:[<endpoint_url>]:<region>:<bucket>:<key>:<secret>` says.
#[derive(Clone)]
pub struct S3Settings {
    /// With a scheme (`http://` or `https://`); `None` for AWS itself.
    pub endpoint_url: Option<String>,
    pub region: String,
    pub bucket: String,
    /// Access key id.
    pub key: String,
    pub secret: String,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint_url", &self.endpoint_url)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("key", &self.key)
            .field("secret", &"***")
            .finish()
    }
}

/// Blocks in an S3 bucket.
pub struct S3BlockStore {
    bucket: Box<Bucket>,
    /// `bucket `name` at <endpoint>`, for logs and errors.
    label: String,
    timeout: Duration,
}

impl S3BlockStore {
    /// The store, without contacting S3 (see [`S3BlockStore::connect`]).
    pub fn new(settings: &S3Settings, timeout: Duration) -> anyhow::Result<Self> {
        let region = match &settings.endpoint_url {
            Some(endpoint) => Region::Custom {
                region: settings.region.clone(),
                endpoint: endpoint.trim_end_matches('/').to_string(),
            },
            None => match settings.region.parse::<Region>() {
                // rust-s3 only knows the regions of its release; a newer one
                // gets AWS's endpoint pattern.
                Ok(Region::Custom { .. }) | Err(_) => Region::Custom {
                    region: settings.region.clone(),
                    endpoint: format!("https://s3.{}.amazonaws.com", settings.region),
                },
                Ok(region) => region,
            },
        };
        let endpoint = region.endpoint();
        let credentials = Credentials::new(Some(&settings.key), Some(&settings.secret), None, None, None)
            .map_err(|e| anyhow::anyhow!("S3 credentials: {e}"))?;
        let bucket = Bucket::new(&settings.bucket, region, credentials)
            .map_err(|e| anyhow::anyhow!("S3 bucket `{}`: {e}", settings.bucket))?;
        let mut bucket = if settings.endpoint_url.is_some() {
            bucket.with_path_style()
        } else {
            bucket
        };
        // Per attempt; `with_deadline` bounds the whole call, retries included.
        bucket.set_request_timeout(Some(timeout));
        Ok(Self {
            bucket,
            label: format!("bucket `{}` at {endpoint}", settings.bucket),
            timeout,
        })
    }

    /// The store, once the bucket answered (the reference's `HEAD` bucket at
    /// startup): a missing bucket, refused credentials or an unreachable
    /// endpoint is an error naming the cause.
    pub async fn connect(settings: &S3Settings, timeout: Duration) -> anyhow::Result<Self> {
        let store = Self::new(settings, timeout)?;
        store.check().await?;
        Ok(store)
    }

    /// `HEAD` on the bucket.
    pub async fn check(&self) -> anyhow::Result<()> {
        // `HEAD <bucket url>/` is S3's HeadBucket, in both addressing styles.
        let head = tokio::time::timeout(self.timeout, self.bucket.head_object("/")).await;
        let why = match head {
            Ok(Ok(_)) => return Ok(()),
            Err(_) => format!("no answer within {:?}", self.timeout),
            Ok(Err(S3Error::HttpFailWithBody(404, _))) => "no such bucket (404)".to_string(),
            Ok(Err(S3Error::HttpFailWithBody(code @ (401 | 403), _))) => {
                format!("access refused ({code}): check the key and the secret")
            }
            Ok(Err(e)) => describe(&e),
        };
        anyhow::bail!("S3 blockstore: {}: {why}", self.label)
    }

    fn failure(&self, op: &str, org: &OrganizationId, block_id: Uuid, e: BlockStoreError) -> BlockStoreError {
        log::warn!(
            "S3 blockstore: block {op} error: {} org={} block={}: {e}",
            self.label,
            org.as_str(),
            block_id.hyphenated()
        );
        e
    }
}

/// An S3 error as one readable line (rust-s3 puts the whole XML error body
/// in `HttpFailWithBody`).
fn describe(e: &S3Error) -> String {
    match e {
        S3Error::HttpFailWithBody(code, body) => {
            let code_name = body
                .split_once("<Code>")
                .and_then(|(_, rest)| rest.split_once("</Code>"))
                .map(|(name, _)| name);
            match code_name {
                Some(name) => format!("HTTP {code} {name}"),
                None => format!("HTTP {code}"),
            }
        }
        S3Error::Reqwest(e) => {
            // reqwest's own text stops at "error sending request": the cause
            // (refused, reset, TLS…) is further down the chain.
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            text
        }
        other => other.to_string(),
    }
}

fn unavailable(e: &S3Error) -> BlockStoreError {
    BlockStoreError::Unavailable(anyhow::anyhow!("{}", describe(e)))
}

#[async_trait]
impl BlockStore for S3BlockStore {
    async fn read(&self, org: &OrganizationId, block_id: Uuid) -> Result<Bytes, BlockStoreError> {
        let key = object_name(org, block_id);
        let call = async {
            match self.bucket.get_object(&key).await {
                Ok(data) => Ok(data.bytes().clone()),
                Err(S3Error::HttpFailWithBody(404, _)) => Err(BlockStoreError::NotFound),
                Err(e) => Err(unavailable(&e)),
            }
        };
        with_deadline(self.timeout, call)
            .await
            .map_err(|e| self.failure("read", org, block_id, e))
    }

    async fn create(&self, org: &OrganizationId, block_id: Uuid, block: Bytes) -> Result<(), BlockStoreError> {
        let key = object_name(org, block_id);
        let call = async {
            match self.bucket.put_object(&key, &block).await {
                Ok(_) => Ok(()),
                Err(e) => Err(unavailable(&e)),
            }
        };
        with_deadline(self.timeout, call)
            .await
            .map_err(|e| self.failure("create", org, block_id, e))
    }

    /// `HEAD` on the bucket, as at startup.
    async fn health(&self) -> Result<(), BlockStoreError> {
        self.check().await.map_err(BlockStoreError::Unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(endpoint: Option<&str>, region: &str) -> S3Settings {
        S3Settings {
            endpoint_url: endpoint.map(str::to_string),
            region: region.into(),
            bucket: "bkt".into(),
            key: "key".into(),
            secret: "TOPSECRET".into(),
        }
    }

    #[test]
    fn addressing() {
        let store = S3BlockStore::new(
            &settings(Some("http://127.0.0.1:9000/"), "parsec-1"),
            DEFAULT_CALL_TIMEOUT,
        )
        .unwrap();
        assert_eq!(
            store.bucket.url(),
            "http://127.0.0.1:9000/bkt",
            "custom endpoint: path style"
        );
        assert_eq!(store.label, "bucket `bkt` at http://127.0.0.1:9000");
        let store = S3BlockStore::new(&settings(None, "eu-west-1"), DEFAULT_CALL_TIMEOUT).unwrap();
        assert_eq!(store.bucket.url(), "https://bkt.s3-eu-west-1.amazonaws.com");
        let store = S3BlockStore::new(&settings(None, "xx-new-9"), DEFAULT_CALL_TIMEOUT).unwrap();
        assert_eq!(store.bucket.url(), "https://bkt.s3.xx-new-9.amazonaws.com");
        assert!(!format!("{:?}", settings(None, "r")).contains("TOPSECRET"));
    }

    #[test]
    fn object_names_use_the_dashed_uuid() {
        let org = OrganizationId::parse("CoolOrg").unwrap();
        let id = Uuid::parse_str("3b91779235ac409f9af1fe6de8d2b905").unwrap();
        assert_eq!(object_name(&org, id), "CoolOrg/3b917792-35ac-409f-9af1-fe6de8d2b905");
    }

    #[test]
    fn error_descriptions_are_one_line() {
        let body = "<?xml version=\"1.0\"?>\n<Error><Code>NoSuchBucket</Code><Message>x</Message></Error>";
        assert_eq!(
            describe(&S3Error::HttpFailWithBody(404, body.into())),
            "HTTP 404 NoSuchBucket"
        );
        assert_eq!(describe(&S3Error::HttpFailWithBody(500, String::new())), "HTTP 500");
    }

    /// Nothing listens there: every call fails fast as unavailable, the
    /// startup check names the endpoint.
    #[actix_web::test]
    async fn unreachable_endpoint() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let endpoint = format!("http://127.0.0.1:{port}");
        let s = settings(Some(&endpoint), "parsec-1");
        let err = S3BlockStore::connect(&s, Duration::from_secs(5)).await.err().unwrap();
        let text = format!("{err:#}");
        assert!(
            text.starts_with(&format!("S3 blockstore: bucket `bkt` at {endpoint}: ")),
            "{text}"
        );
        assert!(!text.contains('\n'), "{text}");
        let store = S3BlockStore::new(&s, Duration::from_secs(5)).unwrap();
        let org = OrganizationId::parse("Org").unwrap();
        assert!(matches!(
            store.create(&org, Uuid::new_v4(), Bytes::from_static(b"x")).await,
            Err(BlockStoreError::Unavailable(_))
        ));
    }

    /// A server that accepts and never answers: the call ends at the deadline.
    #[actix_web::test]
    async fn hung_endpoint_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let held = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let store = S3BlockStore::new(&settings(Some(&endpoint), "parsec-1"), Duration::from_millis(300)).unwrap();
        let org = OrganizationId::parse("Org").unwrap();
        let started = std::time::Instant::now();
        let res = store.create(&org, Uuid::new_v4(), Bytes::from_static(b"x")).await;
        assert!(matches!(res, Err(BlockStoreError::Unavailable(_))), "{res:?}");
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        held.abort();
    }
}
