//! The `--blockstore` grammar (`cli.md` §4): single stores (`MOCKED`, `POSTGRESQL`, `s3:…`,
//! `swift:…`) and RAID0/1/5 groups of them, with the reference's error texts.
//!
//! This module only parses. Whether a store is usable (S3 bucket reachable, POSTGRESQL store
//! with a real database) is checked elsewhere: the `--db` rule in `config.rs`, the network
//! checks at startup.

use super::Secret;

/// Where block bytes live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlockStoreConfig {
    /// In memory, lost at exit.
    Mocked,
    /// Table `block_data` in the `--db` database.
    Postgresql,
    S3(S3Config),
    Swift(SwiftConfig),
    /// Striping: block `id` lives on node `id mod n`.
    Raid0(Vec<BlockStoreConfig>),
    /// Mirroring on every node.
    Raid1(Vec<BlockStoreConfig>),
    /// Striping with XOR parity on the last node; at least 3 nodes.
    Raid5(Vec<BlockStoreConfig>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Config {
    /// `None` means the AWS default endpoint; otherwise it has an `http://`/`https://` scheme
    /// (`https://` is prepended when the value had none).
    pub endpoint_url: Option<String>,
    pub region: String,
    pub bucket: String,
    /// Access key id.
    pub key: String,
    pub secret: Secret,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwiftConfig {
    /// `https://` is prepended when the value had no scheme (an empty value stays empty).
    pub auth_url: String,
    pub tenant: String,
    pub container: String,
    pub user: String,
    pub password: Secret,
}

/// `(RAID mode as typed or None, [(node index, node config)])`.
type RaidGroup<'a> = (Option<&'a str>, Vec<(Option<i128>, &'a str)>);

const S3_USAGE: &str = "Invalid S3 config, must be `s3:[<endpoint_url>]:<region>:<bucket>:<key>:<secret>`";
const SWIFT_USAGE: &str = "Invalid SWIFT config, must be `swift:<auth_url>:<tenant>:<container>:<user>:<password>`";

impl BlockStoreConfig {
    /// The name printed in the startup line: `MOCKED`, `POSTGRESQL`, `S3`, `SWIFT`, `RAID0`,
    /// `RAID1` or `RAID5`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Mocked => "MOCKED",
            Self::Postgresql => "POSTGRESQL",
            Self::S3(_) => "S3",
            Self::Swift(_) => "SWIFT",
            Self::Raid0(_) => "RAID0",
            Self::Raid1(_) => "RAID1",
            Self::Raid5(_) => "RAID5",
        }
    }

    /// Whether this store, or one of its RAID nodes, is the `POSTGRESQL` store.
    pub fn uses_postgresql(&self) -> bool {
        match self {
            Self::Postgresql => true,
            Self::Mocked | Self::S3(_) | Self::Swift(_) => false,
            Self::Raid0(nodes) | Self::Raid1(nodes) | Self::Raid5(nodes) => nodes.iter().any(Self::uses_postgresql),
        }
    }

    /// Parses every `--blockstore` value into one configuration. The error is the detail of
    /// click's `Invalid value for '--blockstore' / '-b': …` message.
    pub fn parse(values: &[String]) -> Result<Self, String> {
        // Groups keyed by the RAID mode *as typed* (`None` for plain values), in order of
        // first appearance, like the reference's `defaultdict`.
        let mut groups: Vec<RaidGroup<'_>> = Vec::new();
        for value in values {
            let (mode, node, config) = split_raid_value(value)?;
            match groups.iter_mut().find(|(m, _)| *m == mode) {
                Some((_, members)) => members.push((node, config)),
                None => groups.push((mode, vec![(node, config)])),
            }
        }

        let [(mode, members)] = groups.as_slice() else {
            let types: Vec<&str> = groups
                .iter()
                .map(|(mode, members)| mode.unwrap_or_else(|| members.first().map_or("", |m| m.1)))
                .collect();
            return Err(format!(
                "Multiple blockstore config with different types: {}",
                types.join("/")
            ));
        };

        let Some(mode) = mode else {
            return match members.as_slice() {
                [(_, config)] => parse_single(config),
                _ => Err("Multiple blockstore configs only available for RAID mode".to_string()),
            };
        };

        let mut nodes = Vec::with_capacity(members.len());
        for index in 0..members.len() {
            let mut configs = members
                .iter()
                .filter(|(node, _)| *node == i128::try_from(index).ok())
                .map(|(_, config)| *config);
            match (configs.next(), configs.next()) {
                (None, _) => return Err(format!("Missing node index `{index}` in RAID config")),
                (Some(_), Some(_)) => {
                    return Err(format!(
                        "Multiple configuration for node index `{index}` in RAID config"
                    ));
                }
                (Some(config), None) => nodes.push(parse_single(config)?),
            }
        }

        match mode.to_uppercase().as_str() {
            "RAID0" => Ok(Self::Raid0(nodes)),
            "RAID1" => Ok(Self::Raid1(nodes)),
            "RAID5" if nodes.len() < 3 => Err("RAID5 block store needs at least 3 nodes".to_string()),
            "RAID5" => Ok(Self::Raid5(nodes)),
            _ => Err(format!("Invalid multi blockstore mode `{mode}`")),
        }
    }
}

/// `RAIDx:<node>:<config>` (split on the first two colons, no escaping) into
/// `(Some(mode as typed), Some(node), config)`; anything else is `(None, None, value)`.
fn split_raid_value(value: &str) -> Result<(Option<&str>, Option<i128>, &str), String> {
    let mut parts = value.splitn(3, ':');
    if let (Some(mode), Some(node), Some(config)) = (parts.next(), parts.next(), parts.next())
        && matches!(mode.to_uppercase().as_str(), "RAID0" | "RAID1" | "RAID5")
    {
        // The reference crashes here (UnboundLocalError); we give the message it meant.
        let node = super::parse_py_int(node).ok_or_else(|| format!("Invalid node index `{node}` (must be integer)"))?;
        return Ok((Some(mode), Some(node), config));
    }
    Ok((None, None, value))
}

/// One non-RAID value: `MOCKED`, `POSTGRESQL`, `s3:…` or `swift:…`.
fn parse_single(value: &str) -> Result<BlockStoreConfig, String> {
    match value.to_uppercase().as_str() {
        "MOCKED" => return Ok(BlockStoreConfig::Mocked),
        "POSTGRESQL" => return Ok(BlockStoreConfig::Postgresql),
        _ => {}
    }
    let parts = split_with_escaping(value);
    let kind = parts.first().map_or("", String::as_str);
    match kind.to_uppercase().as_str() {
        "S3" => {
            let [_, endpoint_url, region, bucket, key, secret] =
                <[String; 6]>::try_from(parts).map_err(|_| S3_USAGE.to_string())?;
            Ok(BlockStoreConfig::S3(S3Config {
                endpoint_url: (!endpoint_url.is_empty()).then(|| with_default_https(endpoint_url)),
                region,
                bucket,
                key,
                secret: Secret::new(secret),
            }))
        }
        "SWIFT" => {
            let [_, auth_url, tenant, container, user, password] =
                <[String; 6]>::try_from(parts).map_err(|_| SWIFT_USAGE.to_string())?;
            Ok(BlockStoreConfig::Swift(SwiftConfig {
                auth_url: if auth_url.is_empty() {
                    auth_url
                } else {
                    with_default_https(auth_url)
                },
                tenant,
                container,
                user,
                password: Secret::new(password),
            }))
        }
        _ => Err(format!("Invalid blockstore type `{kind}`")),
    }
}

/// `foo.com` → `https://foo.com`; an explicit `http://`/`https://` (lowercase, as the
/// reference checks) is kept.
fn with_default_https(url: String) -> String {
    if url.starts_with("http://") || url.starts_with("https://") {
        url
    } else {
        format!("https://{url}")
    }
}

/// Splits on `:`, where `\:` is a literal colon, `\\` a literal backslash, a backslash before
/// any other character is kept with it, and a trailing lone backslash is kept.
fn split_with_escaping(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut escaping = false;
    for c in text.chars() {
        if escaping {
            if c != '\\' && c != ':' {
                current.push('\\');
            }
            current.push(c);
            escaping = false;
        } else if c == '\\' {
            escaping = true;
        } else if c == ':' {
            parts.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    if escaping {
        current.push('\\');
    }
    parts.push(current);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(values: &[&str]) -> Result<BlockStoreConfig, String> {
        let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        BlockStoreConfig::parse(&values)
    }

    fn ok(values: &[&str]) -> BlockStoreConfig {
        parse(values).expect("valid blockstore config")
    }

    fn err(values: &[&str]) -> String {
        parse(values).expect_err("invalid blockstore config")
    }

    #[test]
    fn escaping_rules() {
        assert_eq!(split_with_escaping("a:b"), ["a", "b"]);
        assert_eq!(split_with_escaping(r"a\:b"), [r"a:b"]);
        assert_eq!(split_with_escaping(r"a\\:b"), [r"a\", "b"]);
        assert_eq!(split_with_escaping(r"a\xb"), [r"a\xb"]);
        assert_eq!(split_with_escaping(r"ab\"), [r"ab\"]);
        assert_eq!(split_with_escaping(r"\\\:"), [r"\:"]);
        assert_eq!(split_with_escaping(""), [""]);
        assert_eq!(split_with_escaping("::"), ["", "", ""]);
    }

    #[test]
    fn single_values() {
        assert_eq!(ok(&["MOCKED"]), BlockStoreConfig::Mocked);
        assert_eq!(ok(&["mocked"]), BlockStoreConfig::Mocked);
        assert_eq!(ok(&["PostgreSQL"]), BlockStoreConfig::Postgresql);
        assert_eq!(ok(&["MOCKED"]).kind(), "MOCKED");
        assert_eq!(ok(&["POSTGRESQL"]).kind(), "POSTGRESQL");
    }

    #[test]
    fn s3_values() {
        let expected = S3Config {
            endpoint_url: Some("http://localhost:9000".into()),
            region: "us-east-1".into(),
            bucket: "bucket".into(),
            key: "key".into(),
            secret: Secret::new("secret"),
        };
        assert_eq!(
            ok(&[r"s3:http\://localhost\:9000:us-east-1:bucket:key:secret"]),
            BlockStoreConfig::S3(expected)
        );
        let BlockStoreConfig::S3(s3) = ok(&["S3::eu-west-1:bkt:key:se\\:cret"]) else {
            panic!("expected S3");
        };
        assert_eq!(s3.endpoint_url, None);
        assert_eq!(s3.secret.expose(), "se:cret");
        let BlockStoreConfig::S3(s3) = ok(&["s3:s3.example.com:r:b:k:s"]) else {
            panic!("expected S3");
        };
        assert_eq!(s3.endpoint_url.as_deref(), Some("https://s3.example.com"));
        assert_eq!(ok(&["s3::r:b:k:s"]).kind(), "S3");
    }

    #[test]
    fn swift_values() {
        let BlockStoreConfig::Swift(swift) = ok(&[r"SWIFT:x.com:t:c:u:p\"]) else {
            panic!("expected SWIFT");
        };
        assert_eq!(swift.auth_url, "https://x.com");
        assert_eq!(
            (swift.tenant.as_str(), swift.container.as_str(), swift.user.as_str()),
            ("t", "c", "u")
        );
        assert_eq!(swift.password.expose(), r"p\");
        let BlockStoreConfig::Swift(swift) = ok(&[r"swift:http\://k:t:c:u:p"]) else {
            panic!("expected SWIFT");
        };
        assert_eq!(swift.auth_url, "http://k");
        let BlockStoreConfig::Swift(swift) = ok(&["swift::t:c:u:p"]) else {
            panic!("expected SWIFT");
        };
        assert_eq!(swift.auth_url, "");
    }

    #[test]
    fn single_value_errors() {
        assert_eq!(err(&["foo"]), "Invalid blockstore type `foo`");
        assert_eq!(err(&[""]), "Invalid blockstore type ``");
        assert_eq!(err(&["s3:a:b"]), S3_USAGE);
        assert_eq!(err(&["s3:http://h:9000:r:b:k:s"]), S3_USAGE);
        assert_eq!(err(&["swift:a:b"]), SWIFT_USAGE);
        assert_eq!(err(&["swift:a:b:c:d:e:f"]), SWIFT_USAGE);
        // Fewer than 3 parts is not a RAID value but a (bad) single value.
        assert_eq!(err(&["RAID1:0"]), "Invalid blockstore type `RAID1`");
        assert_eq!(err(&["RAID7:0:MOCKED"]), "Invalid blockstore type `RAID7`");
    }

    #[test]
    fn raid_groups() {
        use BlockStoreConfig::*;
        assert_eq!(ok(&["RAID0:0:MOCKED"]), Raid0(vec![Mocked]));
        assert_eq!(
            ok(&["RAID1:1:POSTGRESQL", "RAID1:0:MOCKED"]),
            Raid1(vec![Mocked, Postgresql])
        );
        assert_eq!(ok(&["raid1:0:MOCKED", "raid1:1:MOCKED"]).kind(), "RAID1");
        let raid5 = ok(&[
            "RAID5:0:MOCKED",
            "RAID5:1:POSTGRESQL",
            "RAID5:2:s3::eu-west-1:bkt:key:secret",
        ]);
        assert_eq!(raid5.kind(), "RAID5");
        assert!(raid5.uses_postgresql());
        let Raid5(nodes) = raid5 else { panic!("expected RAID5") };
        assert_eq!(nodes.len(), 3);
        assert_eq!(nodes[2].kind(), "S3");
        // Python `int()` accepts signs, spaces and digit underscores.
        assert_eq!(ok(&["RAID0:+1:MOCKED", "RAID0:-0:MOCKED"]), Raid0(vec![Mocked, Mocked]));
        assert_eq!(ok(&["RAID0: 0 :MOCKED"]), Raid0(vec![Mocked]));
        // The node config may itself contain colons (escaping applies to it alone).
        let Raid0(nodes) = ok(&[r"RAID0:0:s3:http\://h\:1:r:b:k:s"]) else {
            panic!("RAID0")
        };
        let S3(s3) = &nodes[0] else { panic!("expected S3 node") };
        assert_eq!(s3.endpoint_url.as_deref(), Some("http://h:1"));
        assert!(!ok(&["RAID1:0:MOCKED"]).uses_postgresql());
    }

    #[test]
    fn raid_errors() {
        assert_eq!(
            err(&["raid1:0:MOCKED", "RAID1:1:MOCKED"]),
            "Multiple blockstore config with different types: raid1/RAID1"
        );
        assert_eq!(
            err(&["MOCKED", "RAID1:1:MOCKED"]),
            "Multiple blockstore config with different types: MOCKED/RAID1"
        );
        assert_eq!(
            err(&["RAID0:0:MOCKED", "RAID1:0:MOCKED", "RAID5:0:MOCKED"]),
            "Multiple blockstore config with different types: RAID0/RAID1/RAID5"
        );
        assert_eq!(
            err(&["MOCKED", "MOCKED"]),
            "Multiple blockstore configs only available for RAID mode"
        );
        assert_eq!(err(&["RAID1:1:MOCKED"]), "Missing node index `0` in RAID config");
        assert_eq!(
            err(&["RAID1:0:MOCKED", "RAID1:2:MOCKED"]),
            "Missing node index `1` in RAID config"
        );
        assert_eq!(err(&["RAID0:-1:MOCKED"]), "Missing node index `0` in RAID config");
        assert_eq!(
            err(&["RAID1:0:MOCKED", "RAID1:0:MOCKED"]),
            "Multiple configuration for node index `0` in RAID config"
        );
        assert_eq!(err(&["RAID1:x:MOCKED"]), "Invalid node index `x` (must be integer)");
        assert_eq!(err(&["RAID1:1_:MOCKED"]), "Invalid node index `1_` (must be integer)");
        assert_eq!(
            err(&["RAID5:0:MOCKED", "RAID5:1:MOCKED"]),
            "RAID5 block store needs at least 3 nodes"
        );
        // Nesting is impossible: the node config is a single value.
        assert_eq!(err(&["RAID1:0:RAID1:0:MOCKED"]), "Invalid blockstore type `RAID1`");
        assert_eq!(err(&["RAID1:0:bad"]), "Invalid blockstore type `bad`");
    }

    #[test]
    fn secrets_are_not_in_debug_output() {
        let config = ok(&["RAID1:0:s3::r:b:key:TOPSECRET", "RAID1:1:swift:a:t:c:u:PASSWORD"]);
        let debug = format!("{config:?}");
        assert!(!debug.contains("TOPSECRET"), "{debug}");
        assert!(!debug.contains("PASSWORD"), "{debug}");
        assert!(debug.contains("***"));
    }
}
