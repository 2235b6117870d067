//! The cluster store's key layout and the records under it. Everything vswitchd keeps in
//! etcd is under [`PREFIX`], one JSON value per key:
//!
//! | key | value | lease |
//! |---|---|---|
//! | `nodes/<node>` | [`NodeRecord`]: the host's VTEP | the node's |
//! | `networks/<id>` | [`NetworkRecord`]: a global network | none |
//! | `networks-rev` | empty; rewritten by every network create and remove | none |
//! | `ipam/<network id>/<ip>` | `<node>/<endpoint id>`: who holds the address (IPv4 or IPv6) | the holder's |
//! | `ipam-rev/<network id>` | empty; rewritten by every address claim | none |
//! | `endpoints/<network id>/<node>/<endpoint id>` | [`EndpointRecord`] | the node's |
//! | `ula-prefix` | the cluster's IPv6 /48 (RFC 4193), written by the first host that needs one | none |
//!
//! `networks-rev` and `ipam-rev/<id>` are optimistic locks: a network create compares
//! the revision of `networks-rev` it read its checks at (names, subnets, VNIs), and a
//! network remove compares that of `ipam-rev/<id>`, so a claim made meanwhile by
//! another host makes the remove fail rather than strand an endpoint.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

/// Every key vswitchd reads or writes starts with this.
pub const PREFIX: &str = "/vswitch/v1/";

/// A host of the cluster, alive while its lease is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub name: String,
    /// Where the others send its tunnels (`--advertise`).
    pub vtep: Ipv4Addr,
    /// When this daemon registered (RFC 3339).
    pub started: String,
    pub version: String,
}

/// A global (cluster-wide) overlay network: created once, the same on every host.
/// IPv4, IPv6 or both: each family's subnet and gateway are given together.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRecord {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<Ipv4Net>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<Ipv4Net>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet6: Option<Ipv6Net>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<Ipv6Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range6: Option<Ipv6Net>,
    pub vni: u32,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub attachable: bool,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub created: String,
    /// The host it was created on.
    pub node: String,
}

/// One endpoint of a global network, published by the host it lives on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRecord {
    pub network: String,
    pub node: String,
    pub id: String,
    /// The sandbox's name (what the embedded DNS answers).
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    pub mac: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip6: Option<Ipv6Addr>,
    pub vtep: Ipv4Addr,
}

impl EndpointRecord {
    pub fn mac(&self) -> Option<[u8; 6]> {
        crate::model::Mac::parse(&self.mac).ok().map(|m| m.0)
    }

    /// Its addresses, IPv4 first: each is an `ipam/` key it holds.
    pub fn addresses(&self) -> Vec<IpAddr> {
        let v4 = self.ip.map(IpAddr::V4);
        let v6 = self.ip6.map(IpAddr::V6);
        v4.into_iter().chain(v6).collect()
    }

    /// Its addresses as messages show them (`172.28.0.2, fd00::2`).
    pub fn addresses_text(&self) -> String {
        let a: Vec<String> = self.addresses().iter().map(IpAddr::to_string).collect();
        a.join(", ")
    }
}

impl NetworkRecord {
    /// Its subnets as messages show them (`172.28.0.0/24 fd00:1::/64`).
    pub fn subnets_text(&self) -> String {
        let v4 = self.subnet.map(|s| s.to_string());
        let v6 = self.subnet6.map(|s| s.to_string());
        let s: Vec<String> = v4.into_iter().chain(v6).collect();
        s.join(" ")
    }
}

/// What a key names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Key {
    Node(String),
    Network(String),
    NetworksRev,
    Ipam {
        network: String,
        ip: IpAddr,
    },
    IpamRev(String),
    UlaPrefix,
    Endpoint {
        network: String,
        node: String,
        id: String,
    },
}

pub fn node(name: &str) -> String {
    format!("{PREFIX}nodes/{name}")
}
pub fn network(id: &str) -> String {
    format!("{PREFIX}networks/{id}")
}
pub fn networks_rev() -> String {
    format!("{PREFIX}networks-rev")
}
pub fn ipam(network: &str, ip: IpAddr) -> String {
    format!("{PREFIX}ipam/{network}/{ip}")
}
pub fn ipam_prefix(network: &str) -> String {
    format!("{PREFIX}ipam/{network}/")
}
pub fn ipam_rev(network: &str) -> String {
    format!("{PREFIX}ipam-rev/{network}")
}
pub fn ula_prefix() -> String {
    format!("{PREFIX}ula-prefix")
}
pub fn endpoint(e: &EndpointRecord) -> String {
    format!("{PREFIX}endpoints/{}/{}/{}", e.network, e.node, e.id)
}
pub fn endpoints_prefix(network: &str) -> String {
    format!("{PREFIX}endpoints/{network}/")
}
/// The value of an address key: who holds it.
pub fn holder(node: &str, endpoint: &str) -> String {
    format!("{node}/{endpoint}")
}

/// A name part of a key: non-empty, no `/`, printable ASCII.
fn part(s: &str) -> Option<String> {
    (!s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic() && b != b'/'))
        .then(|| s.to_string())
}

/// What `key` names, or None for a key vswitchd does not write (left alone, counted).
pub fn parse(key: &str) -> Option<Key> {
    let rest = key.strip_prefix(PREFIX)?;
    let parts: Vec<&str> = rest.split('/').collect();
    Some(match parts.as_slice() {
        ["nodes", n] => Key::Node(part(n)?),
        ["networks", id] => Key::Network(part(id)?),
        ["networks-rev"] => Key::NetworksRev,
        ["ipam", net, ip] => Key::Ipam {
            network: part(net)?,
            ip: ip.parse().ok()?,
        },
        ["ipam-rev", net] => Key::IpamRev(part(net)?),
        ["ula-prefix"] => Key::UlaPrefix,
        ["endpoints", net, node, id] => Key::Endpoint {
            network: part(net)?,
            node: part(node)?,
            id: part(id)?,
        },
        _ => return None,
    })
}

/// A change to the store's content, as the controller applies it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    NodePut(NodeRecord),
    NodeDel(String),
    NetworkPut(NetworkRecord),
    NetworkDel(String),
    EndpointPut(EndpointRecord),
    EndpointDel {
        network: String,
        node: String,
        id: String,
    },
}

/// Why a key's value was not taken.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BadValue {
    #[error("not a vswitchd key")]
    UnknownKey,
    #[error("value is not the JSON vswitchd writes: {0}")]
    Json(String),
    #[error("value does not match its key: {0}")]
    Mismatch(&'static str),
}

fn json<T: for<'de> Deserialize<'de>>(value: &[u8]) -> Result<T, BadValue> {
    serde_json::from_slice(value).map_err(|e| BadValue::Json(e.to_string()))
}

/// The change a put of `value` at `key` makes; Ok(None) for keys that carry no state
/// of their own (the optimistic locks, the address keys: endpoints carry addresses).
pub fn put(key: &str, value: &[u8]) -> Result<Option<Change>, BadValue> {
    match parse(key).ok_or(BadValue::UnknownKey)? {
        Key::Node(n) => {
            let r: NodeRecord = json(value)?;
            if r.name != n {
                return Err(BadValue::Mismatch("node name"));
            }
            Ok(Some(Change::NodePut(r)))
        }
        Key::Network(id) => {
            let r: NetworkRecord = json(value)?;
            if r.id != id {
                return Err(BadValue::Mismatch("network id"));
            }
            // vswitchd's ids, as Docker's: 64 hex digits (the rest of the daemon
            // shortens them to 12 and looks them up by prefix).
            if r.id.len() != 64 || !r.id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(BadValue::Mismatch("network id (64 hex digits)"));
            }
            if crate::model::validate_name("network", &r.name).is_err() {
                return Err(BadValue::Mismatch("network name"));
            }
            if r.vni == 0 || r.vni > 0x00ff_ffff {
                return Err(BadValue::Mismatch("VNI"));
            }
            // Each family whole (subnet and gateway in it), and one family at least.
            let v4 = match (r.subnet, r.gateway) {
                (Some(s), Some(g)) if s.contains(&g) => true,
                (None, None) => false,
                _ => return Err(BadValue::Mismatch("IPv4 subnet and gateway")),
            };
            let v6 = match (r.subnet6, r.gateway6) {
                (Some(s), Some(g)) if s.contains(&g) => true,
                (None, None) => false,
                _ => return Err(BadValue::Mismatch("IPv6 subnet and gateway")),
            };
            if !v4 && !v6 {
                return Err(BadValue::Mismatch("network subnet (none given)"));
            }
            Ok(Some(Change::NetworkPut(r)))
        }
        Key::Endpoint { network, node, id } => {
            let r: EndpointRecord = json(value)?;
            if r.network != network || r.node != node || r.id != id {
                return Err(BadValue::Mismatch("endpoint network, node or id"));
            }
            if r.mac().is_none() {
                return Err(BadValue::Mismatch("endpoint MAC"));
            }
            if r.ip.is_none() && r.ip6.is_none() {
                return Err(BadValue::Mismatch("endpoint address (none given)"));
            }
            // The embedded DNS answers them: one bad name must not keep the network's
            // whole name table from being built.
            let names_ok = crate::model::validate_dns_name("sandbox", &r.name).is_ok()
                && r.aliases
                    .iter()
                    .all(|a| crate::model::validate_dns_name("alias", a).is_ok());
            if !names_ok {
                return Err(BadValue::Mismatch("endpoint name or alias (DNS names)"));
            }
            Ok(Some(Change::EndpointPut(r)))
        }
        Key::NetworksRev | Key::Ipam { .. } | Key::IpamRev(_) | Key::UlaPrefix => Ok(None),
    }
}

/// The change a delete of `key` makes.
pub fn delete(key: &str) -> Option<Change> {
    match parse(key)? {
        Key::Node(n) => Some(Change::NodeDel(n)),
        Key::Network(id) => Some(Change::NetworkDel(id)),
        Key::Endpoint { network, node, id } => Some(Change::EndpointDel { network, node, id }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep() -> EndpointRecord {
        EndpointRecord {
            network: "n1".into(),
            node: "h1".into(),
            id: "e1".into(),
            name: "web".into(),
            aliases: vec!["www".into()],
            mac: "02:42:ac:1c:00:02".into(),
            ip: Some(Ipv4Addr::new(172, 28, 0, 2)),
            ip6: Some("fd00:28::2".parse().unwrap()),
            vtep: Ipv4Addr::new(10, 200, 0, 1),
        }
    }

    #[test]
    fn keys_round_trip_through_parse() {
        let e = ep();
        assert_eq!(
            parse(&endpoint(&e)),
            Some(Key::Endpoint {
                network: "n1".into(),
                node: "h1".into(),
                id: "e1".into()
            })
        );
        assert_eq!(parse(&node("h1")), Some(Key::Node("h1".into())));
        assert_eq!(parse(&network("abc")), Some(Key::Network("abc".into())));
        assert_eq!(parse(&networks_rev()), Some(Key::NetworksRev));
        for ip in e.addresses() {
            assert_eq!(
                parse(&ipam("n1", ip)),
                Some(Key::Ipam {
                    network: "n1".into(),
                    ip
                })
            );
        }
        assert_eq!(e.addresses().len(), 2);
        assert_eq!(parse(&ula_prefix()), Some(Key::UlaPrefix));
        assert_eq!(parse(&ipam_rev("n1")), Some(Key::IpamRev("n1".into())));
    }

    #[test]
    fn keys_vswitchd_did_not_write_are_refused() {
        for k in [
            "/other/app",
            "/vswitch/v1/",
            "/vswitch/v1/nodes/",
            "/vswitch/v1/nodes/a/b",
            "/vswitch/v1/ipam/n1/not-an-ip",
            "/vswitch/v1/endpoints/n1/h1",
            "/vswitch/v2/nodes/h1",
        ] {
            assert_eq!(parse(k), None, "{k}");
            assert!(put(k, b"{}").is_err(), "{k}");
        }
    }

    #[test]
    fn values_must_be_ours_and_match_their_key() {
        let e = ep();
        let v = serde_json::to_vec(&e).unwrap();
        assert_eq!(
            put(&endpoint(&e), &v),
            Ok(Some(Change::EndpointPut(e.clone())))
        );
        // The same value under another node's key is a forgery or a bug: refused.
        let other = endpoint(&EndpointRecord {
            node: "h2".into(),
            ..e.clone()
        });
        assert_eq!(
            put(&other, &v),
            Err(BadValue::Mismatch("endpoint network, node or id"))
        );
        assert!(matches!(
            put(&endpoint(&e), b"garbage"),
            Err(BadValue::Json(_))
        ));
        let bad_mac = serde_json::to_vec(&EndpointRecord {
            mac: "ff:ff:ff:ff:ff:ff".into(),
            ..e.clone()
        })
        .unwrap();
        assert!(put(&endpoint(&e), &bad_mac).is_err());
        assert_eq!(put(&ipam("n1", e.addresses()[0]), b"h1/e1"), Ok(None));
        let no_address = serde_json::to_vec(&EndpointRecord {
            ip: None,
            ip6: None,
            ..e.clone()
        })
        .unwrap();
        assert!(put(&endpoint(&e), &no_address).is_err());
        // A record from before IPv6 (a bare IPv4 address) still reads.
        let old = r#"{"network":"n1","node":"h1","id":"e1","name":"web","mac":"02:42:ac:1c:00:02","ip":"172.28.0.2","vtep":"10.200.0.1"}"#;
        assert!(matches!(
            put(&endpoint(&e), old.as_bytes()),
            Ok(Some(Change::EndpointPut(EndpointRecord {
                ip: Some(_),
                ip6: None,
                ..
            })))
        ));
        // A name the DNS cannot carry, a network id the daemon cannot shorten: refused.
        let bad_alias = serde_json::to_vec(&EndpointRecord {
            aliases: vec!["a..b".into()],
            ..e.clone()
        })
        .unwrap();
        assert!(put(&endpoint(&e), &bad_alias).is_err());
        let rec = |id: &str| NetworkRecord {
            id: id.into(),
            name: "g".into(),
            subnet: Some("172.28.0.0/24".parse().unwrap()),
            gateway: Some("172.28.0.1".parse().unwrap()),
            ip_range: None,
            subnet6: None,
            gateway6: None,
            ip_range6: None,
            vni: 4096,
            internal: false,
            attachable: false,
            options: BTreeMap::new(),
            labels: BTreeMap::new(),
            created: "t".into(),
            node: "h1".into(),
        };
        let put_net = |r: &NetworkRecord| put(&network(&r.id), &serde_json::to_vec(r).unwrap());
        let id = "ab".repeat(32);
        let v6_only = NetworkRecord {
            subnet: None,
            gateway: None,
            subnet6: Some("fd00:28::/64".parse().unwrap()),
            gateway6: Some("fd00:28::1".parse().unwrap()),
            ..rec(&id)
        };
        assert!(matches!(put_net(&v6_only), Ok(Some(Change::NetworkPut(_)))));
        for bad in [
            NetworkRecord {
                subnet6: None,
                ..v6_only.clone()
            },
            NetworkRecord {
                gateway6: Some("fd00:29::1".parse().unwrap()),
                ..v6_only.clone()
            },
            NetworkRecord {
                gateway6: None,
                subnet6: None,
                ..v6_only.clone()
            },
        ] {
            assert!(put_net(&bad).is_err(), "{bad:?}");
        }
        let net = |id: &str| put_net(&rec(id));
        assert!(
            net("x").is_err(),
            "a short id would be cut at 12 characters"
        );
        assert!(matches!(
            net(&"ab".repeat(32)),
            Ok(Some(Change::NetworkPut(_)))
        ));
        assert_eq!(
            delete(&endpoint(&e)),
            Some(Change::EndpointDel {
                network: "n1".into(),
                node: "h1".into(),
                id: "e1".into()
            })
        );
    }
}
