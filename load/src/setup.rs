//! Setup phase, before anything is measured: a fresh organization created
//! through the administration API and bootstrapped on the anonymous route, a
//! second device of the same user (`device_create`), a realm
//! (`realm_create`), and the vlobs and blocks the read scenarios read.
//!
//! Also the request builders every scenario uses, so that field names are
//! spelled once.

use std::net::SocketAddr;
use std::time::Duration;

use parsec_protocol::types::{DateTime, DeviceId, Key32, OrganizationId, Uuid, uuid_value};
use parsec_protocol::value::{self, Value};

use crate::args::{Config, Scenario};
use crate::client::{self, ClientError, Map, WsClient, field, status};
use crate::identity::{self, Device};

/// Encryption revision of every realm we create.
pub const ENCRYPTION_REVISION: u32 = 1;
/// Read scenarios spread their reads over at most this many vlobs / blocks.
pub const MAX_READ_POOL: usize = 64;

/// A bootstrapped organization: one user with one or two devices.
#[derive(Debug, Clone)]
pub struct Org {
    pub addr: SocketAddr,
    pub id: OrganizationId,
    pub rvk: Key32,
    pub first: Device,
    /// A second device of the same user; `None` when the server does not
    /// know `device_create` (then the first one stands in for it).
    pub second: Option<Device>,
}

impl Org {
    /// An authenticated connection of `device`, replies awaited at most `timeout`.
    pub async fn login(&self, device: &Device, timeout: Duration) -> Result<WsClient, ClientError> {
        let mut ws = WsClient::login(self.addr, &self.id, &device.device_id, &device.signing_key, &self.rvk).await?;
        ws.timeout = timeout;
        Ok(ws)
    }

    /// Client `i`'s device: alternately the first and the second device.
    pub fn device_for(&self, i: usize) -> &Device {
        match &self.second {
            Some(second) if i % 2 == 1 => second,
            _ => &self.first,
        }
    }
}

/// What the scenarios work on.
#[derive(Debug, Clone, Default)]
pub struct Fixtures {
    pub realm: Option<Uuid>,
    /// Vlobs at version 1, read by `vlob_read` and `mix`.
    pub read_vlobs: Vec<Uuid>,
    /// One vlob per client (version 1), updated by its client only.
    pub own_vlobs: Vec<Uuid>,
    /// Blocks of `--block-size` bytes, read by `block_read` and `mix`.
    pub blocks: Vec<Uuid>,
    /// The vlob the fanout writer updates.
    pub fanout_vlob: Option<Uuid>,
}

// ------------------------------------------------------------- requests

fn cmd(name: &str, fields: Vec<(&str, Value)>) -> Value {
    let mut all = vec![("cmd", Value::from(name))];
    all.extend(fields);
    value::map(all)
}

pub fn ping(text: &str) -> Value {
    cmd("ping", vec![("ping", Value::from(text))])
}

pub fn vlob_create(realm: Uuid, vlob: Uuid, timestamp: DateTime, blob: &[u8]) -> Value {
    cmd(
        "vlob_create",
        vec![
            ("realm_id", uuid_value(realm)),
            ("encryption_revision", Value::from(ENCRYPTION_REVISION)),
            ("vlob_id", uuid_value(vlob)),
            ("timestamp", timestamp.to_value()),
            ("blob", Value::Binary(blob.to_vec())),
        ],
    )
}

/// Latest version of `vlob`.
pub fn vlob_read(vlob: Uuid) -> Value {
    cmd(
        "vlob_read",
        vec![
            ("encryption_revision", Value::from(ENCRYPTION_REVISION)),
            ("vlob_id", uuid_value(vlob)),
            ("version", Value::Nil),
            ("timestamp", Value::Nil),
        ],
    )
}

pub fn vlob_update(vlob: Uuid, version: u64, timestamp: DateTime, blob: &[u8]) -> Value {
    cmd(
        "vlob_update",
        vec![
            ("encryption_revision", Value::from(ENCRYPTION_REVISION)),
            ("vlob_id", uuid_value(vlob)),
            ("timestamp", timestamp.to_value()),
            ("version", Value::from(version)),
            ("blob", Value::Binary(blob.to_vec())),
        ],
    )
}

pub fn vlob_poll_changes(realm: Uuid, last_checkpoint: u64) -> Value {
    cmd(
        "vlob_poll_changes",
        vec![
            ("realm_id", uuid_value(realm)),
            ("last_checkpoint", Value::from(last_checkpoint)),
        ],
    )
}

pub fn block_create(block: Uuid, realm: Uuid, data: &[u8]) -> Value {
    cmd(
        "block_create",
        vec![
            ("block_id", uuid_value(block)),
            ("realm_id", uuid_value(realm)),
            ("block", Value::Binary(data.to_vec())),
        ],
    )
}

/// [`block_create`] without its `block`, for [`WsClient::request_with_bytes`].
pub fn block_create_head(block: Uuid, realm: Uuid) -> Vec<(Value, Value)> {
    vec![
        (Value::from("cmd"), Value::from("block_create")),
        (Value::from("block_id"), uuid_value(block)),
        (Value::from("realm_id"), uuid_value(realm)),
    ]
}

pub fn block_read(block: Uuid) -> Value {
    cmd("block_read", vec![("block_id", uuid_value(block))])
}

pub fn events_subscribe() -> Value {
    cmd("events_subscribe", vec![])
}

pub fn events_listen(wait: bool) -> Value {
    cmd("events_listen", vec![("wait", Value::Boolean(wait))])
}

/// Bytes that do not compress: what encrypted blobs look like.
pub fn random_bytes(n: usize) -> Vec<u8> {
    (0..n).map(|_| rand::random::<u8>()).collect()
}

// ---------------------------------------------------------------- setup

/// Sends `req` and requires `ok`.
async fn expect_ok(ws: &mut WsClient, what: &str, req: &Value) -> Result<Map, String> {
    let rep = ws.request(req).await.map_err(|e| format!("{what}: {e}"))?;
    match status(&rep) {
        "ok" => Ok(rep),
        other => Err(format!(
            "{what}: server answered `{other}`{}",
            field(&rep, "reason")
                .as_str()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        )),
    }
}

/// Creates the organization and the fixtures `cfg.scenario` needs. `log`
/// receives one line per step; `notes` what the report must mention.
pub async fn prepare(
    cfg: &Config,
    addr: SocketAddr,
    log: &dyn Fn(&str),
    notes: &mut Vec<String>,
) -> Result<(Org, Fixtures), String> {
    let id = identity::unique_org("Load")?;
    log(&format!("creating organization {id} through the administration API"));
    let (code, body) = client::admin(
        addr,
        &cfg.admin_token,
        "POST",
        "/administration/organizations",
        &serde_json::json!({"organization_id": id.as_str()}),
    )
    .await
    .map_err(|e| format!("organization creation: {e}"))?;
    let token = match (code, body["bootstrap_token"].as_str()) {
        (200, Some(t)) => t.to_string(),
        (403, _) => return Err("organization creation: administration token refused (see --admin-token)".into()),
        _ => return Err(format!("organization creation: HTTP {code} {body}")),
    };

    let root = identity::new_key();
    let first = Device {
        device_id: DeviceId::parse("alice@dev1")?,
        signing_key: identity::new_key(),
    };
    let certs = identity::bootstrap_certs(&root, &first.device_id, &first.signing_key, DateTime::now());
    let req = identity::bootstrap_req(&token, &root, &certs);
    let (code, rep) = client::anonymous(addr, id.as_str(), &value::pack(&req))
        .await
        .map_err(|e| format!("bootstrap: {e}"))?;
    if (code, status(&rep)) != (200, "ok") {
        return Err(format!("bootstrap: HTTP {code}, status `{}`", status(&rep)));
    }
    let mut org = Org {
        addr,
        id,
        rvk: root.verifying_key().to_bytes(),
        first,
        second: None,
    };
    log("organization bootstrapped; logging in as alice@dev1");
    let mut ws = org
        .login(&org.first, cfg.timeout)
        .await
        .map_err(|e| format!("first login: {e}"))?;

    let second = Device {
        device_id: DeviceId::parse("alice@dev2")?,
        signing_key: identity::new_key(),
    };
    let rep = ws
        .request(&identity::device_create_req(&org.first, &second, DateTime::now()))
        .await
        .map_err(|e| format!("device_create: {e}"))?;
    match status(&rep) {
        "ok" => {
            log("second device alice@dev2 created");
            org.second = Some(second);
        }
        "unknown_command" => {
            let note = "the server does not know device_create: every connection uses alice@dev1".to_string();
            log(&note);
            notes.push(note);
        }
        other => return Err(format!("device_create: server answered `{other}`")),
    }

    let mut fx = Fixtures::default();
    if cfg.scenario.needs_realm() {
        let realm = Uuid::new_v4();
        expect_ok(
            &mut ws,
            "realm_create",
            &identity::realm_create_req(&org.first, realm, DateTime::now()),
        )
        .await?;
        log(&format!("realm {realm} created"));
        fx.realm = Some(realm);
        let blob = random_bytes(cfg.blob_size);
        let new_vlobs = async |ws: &mut WsClient, n: usize| -> Result<Vec<Uuid>, String> {
            let mut out = Vec::with_capacity(n);
            for _ in 0..n {
                let vlob = Uuid::new_v4();
                expect_ok(ws, "vlob_create", &vlob_create(realm, vlob, DateTime::now(), &blob)).await?;
                out.push(vlob);
            }
            Ok(out)
        };
        let s = cfg.scenario;
        if matches!(s, Scenario::VlobRead | Scenario::Mix) {
            fx.read_vlobs = new_vlobs(&mut ws, cfg.clients.min(MAX_READ_POOL)).await?;
        }
        if matches!(s, Scenario::VlobUpdate | Scenario::Mix) {
            fx.own_vlobs = new_vlobs(&mut ws, cfg.clients).await?;
        }
        if s == Scenario::Fanout {
            fx.fanout_vlob = new_vlobs(&mut ws, 1).await?.pop();
        }
        if matches!(s, Scenario::BlockRead | Scenario::Mix) {
            let data = random_bytes(cfg.block_size);
            for _ in 0..cfg.clients.min(MAX_READ_POOL) {
                let block = Uuid::new_v4();
                expect_ok(&mut ws, "block_create", &block_create(block, realm, &data)).await?;
                fx.blocks.push(block);
            }
        }
        let created = fx.read_vlobs.len() + fx.own_vlobs.len() + fx.fanout_vlob.iter().count();
        if created + fx.blocks.len() > 0 {
            log(&format!("{created} vlobs and {} blocks created", fx.blocks.len()));
        }
    }
    ws.close().await;
    Ok((org, fx))
}
