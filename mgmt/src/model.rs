//! The CNM model, libnetwork's shape: networks, endpoints and sandboxes, as persisted.
//! Free of data-path detail; drivers realise it.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult};
use crate::ipam::Pool;
use crate::ipam6::Pool6;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DriverKind {
    Bridge,
    Overlay,
    Macvlan,
    Host,
    Null,
}

impl DriverKind {
    pub fn name(self) -> &'static str {
        match self {
            DriverKind::Bridge => "bridge",
            DriverKind::Overlay => "overlay",
            DriverKind::Macvlan => "macvlan",
            DriverKind::Host => "host",
            DriverKind::Null => "null",
        }
    }
    pub fn parse(s: &str) -> ApiResult<Self> {
        match s {
            "bridge" => Ok(DriverKind::Bridge),
            "overlay" => Ok(DriverKind::Overlay),
            "macvlan" => Ok(DriverKind::Macvlan),
            "host" | "null" => Err(ApiError::invalid(format!(
                "only one instance of \"{s}\" network is allowed; it is predefined"
            ))),
            o => Err(ApiError::invalid(format!(
                "unknown driver {o:?} (expected bridge, overlay or macvlan)"
            ))),
        }
    }
}

/// How an endpoint reaches the switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LinkKind {
    #[default]
    Veth,
    Tap,
}

impl LinkKind {
    pub fn parse(s: &str) -> ApiResult<Self> {
        match s {
            "veth" => Ok(LinkKind::Veth),
            "tap" => Ok(LinkKind::Tap),
            o => Err(ApiError::invalid(format!(
                "unknown link kind {o:?} (expected veth or tap)"
            ))),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Network {
    pub id: String,
    pub name: String,
    pub driver: DriverKind,
    /// None for host/none.
    pub pool: Option<Pool>,
    /// The IPv6 pool of a dual-stack network (`--ipv6`, Docker's EnableIPv6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool6: Option<Pool6>,
    pub internal: bool,
    pub attachable: bool,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub created: String,
    /// The data plane's number for this network.
    pub num: u32,
    /// bridge, host and none exist from the start and cannot be removed.
    pub predefined: bool,
    /// A global network of the cluster store (Scope `global`): the store is its truth.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub global: bool,
    /// The VTEPs of the other hosts with endpoints on it (global networks; from the
    /// cluster store, never persisted).
    #[serde(skip)]
    pub members: Vec<Ipv4Addr>,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// Docker's scheme: 02:42 followed by the IPv4 address.
    pub fn from_ip(ip: Ipv4Addr) -> Mac {
        let o = ip.octets();
        Mac([0x02, 0x42, o[0], o[1], o[2], o[3]])
    }
    /// The same scheme for an endpoint with IPv6 only: 02:42 followed by the last 32
    /// bits of its address, mixed with its /64 (both 32-bit halves of the prefix XORed
    /// in): unique within a network, whose pool hands addresses out in order, and not
    /// the same MAC for `::2` of every IPv6-only network.
    pub fn from_ip6(ip: Ipv6Addr) -> Mac {
        let o = ip.octets();
        let k = |i: usize| o[i] ^ o[i + 4];
        Mac([
            0x02,
            0x42,
            o[12] ^ k(0),
            o[13] ^ k(1),
            o[14] ^ k(2),
            o[15] ^ k(3),
        ])
    }
    pub fn parse(s: &str) -> ApiResult<Mac> {
        let bad = || {
            ApiError::invalid(format!(
                "invalid MAC address {s:?} (expected six hex bytes like 02:42:ac:11:00:02)"
            ))
        };
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 6 {
            return Err(bad());
        }
        let mut m = [0u8; 6];
        for (i, p) in parts.iter().enumerate() {
            if p.len() != 2 {
                return Err(bad());
            }
            m[i] = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if m[0] & 1 != 0 {
            return Err(ApiError::invalid(format!(
                "MAC address {s} is multicast; an endpoint needs a unicast address"
            )));
        }
        if m == [0; 6] {
            return Err(ApiError::invalid(
                "MAC address 00:00:00:00:00:00 is not usable",
            ));
        }
        Ok(Mac(m))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Endpoint {
    pub id: String,
    pub network: String,
    pub sandbox: String,
    /// Its IPv4 address; None on an IPv6-only network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<Ipv4Addr>,
    /// Its IPv6 address on a network with IPv6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip6: Option<Ipv6Addr>,
    pub mac: Mac,
    pub aliases: Vec<String>,
    pub link: LinkKind,
    /// The interface inside the sandbox (ethN).
    pub ifname: String,
    /// The switch's end of a veth pair, in the daemon's namespace.
    pub host_ifname: Option<String>,
    /// What the endpoint may send from (on unless turned off for it).
    #[serde(default)]
    pub security: PortSecurity,
    /// Where its container end is, when not in a sandbox of vswitch's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outside: Option<Outside>,
}

impl Endpoint {
    /// The MAC an endpoint gets unless one is asked for: from its IPv4 address, as
    /// Docker's, else from its IPv6 address and /64.
    pub fn default_mac(ip: Option<Ipv4Addr>, ip6: Option<Ipv6Addr>) -> Mac {
        match (ip, ip6) {
            (Some(ip), _) => Mac::from_ip(ip),
            (None, Some(ip6)) => Mac::from_ip6(ip6),
            (None, None) => Mac([0x02, 0x42, 0, 0, 0, 0]),
        }
    }
}

/// Port security of one endpoint: on by default, the endpoint sends only from its own
/// MAC and IPv4 address and `allowed` ones (OVN's allowed-address-pairs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSecurity {
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_ips: Vec<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_ips6: Vec<Ipv6Addr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_macs: Vec<Mac>,
}

impl Default for PortSecurity {
    fn default() -> Self {
        PortSecurity {
            enabled: true,
            allowed_ips: Vec::new(),
            allowed_ips6: Vec::new(),
            allowed_macs: Vec::new(),
        }
    }
}

/// Where a sandbox's network namespace comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "of")]
pub enum SandboxMode {
    /// Its own namespace, connected to networks.
    Netns,
    /// The host's namespace.
    Host,
    /// Its own namespace with loopback only; never connected.
    None,
    /// Another sandbox's namespace (`--network container:NAME`): same addresses, same
    /// ports, no endpoints of its own.
    Container(String),
    /// A namespace a container runtime owns (Docker through the remote driver, a CNI
    /// runtime): vswitch makes none, writes no resolv.conf or hosts file into it, and
    /// never removes or recreates it. One such sandbox per endpoint.
    External(External),
}

/// Whose an external sandbox is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct External {
    pub runtime: Runtime,
    /// Docker's endpoint id, or the CNI container id.
    pub id: String,
    /// Docker's SandboxKey once it joined, or CNI_NETNS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    Docker,
    Cni,
}

impl Runtime {
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Cni => "cni",
        }
    }
}

/// Where an endpoint's container end is made when it is not a sandbox of vswitch's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outside {
    /// Docker's: in vswitchd's namespace under this name, for dockerd to move into the
    /// container (Join's SrcName) and configure.
    Docker { peer: String },
    /// A CNI runtime's: in this namespace file (CNI_NETNS), addresses and routes set
    /// by vswitch.
    Netns { path: PathBuf },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Sandbox {
    pub id: String,
    pub name: String,
    pub mode: SandboxMode,
    /// Endpoint ids in connection order; the first non-internal one holds the default route.
    pub endpoints: Vec<String>,
    pub created: String,
    /// Published ports (`-p`, `-P`), reached through the uplink address.
    #[serde(default)]
    pub ports: Vec<crate::publish::Binding>,
    /// `--add-host NAME:IP` entries as given (`host-gateway` resolved when written).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<String>,
}

/// A random 64-hex-digit id, like Docker's.
pub fn new_id() -> String {
    let a: u128 = rand::random();
    let b: u128 = rand::random();
    format!("{a:032x}{b:032x}")
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string()
}

/// Docker's rule for network and container names, with a length cap so the name fits
/// a namespace file name.
pub fn validate_name(what: &str, name: &str) -> ApiResult<()> {
    let ok_first = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let ok_rest = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !ok_first || !ok_rest || name.len() > 64 {
        return Err(ApiError::invalid(format!(
            "invalid {what} name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed, at most 64 characters"
        )));
    }
    Ok(())
}

/// A sandbox name or alias, which the embedded DNS answers for: Docker's rule, and a
/// valid DNS name (no empty label, labels of at most 63 bytes), so that it is refused at
/// create rather than accepted and left out of the name table.
pub fn validate_dns_name(what: &str, name: &str) -> ApiResult<()> {
    validate_name(what, name)?;
    let labels = name.strip_suffix('.').unwrap_or(name).split('.');
    for label in labels {
        if label.is_empty() || label.len() > 63 {
            return Err(ApiError::invalid(format!(
                "invalid {what} name {name:?}: it must be a DNS name, dot-separated labels of 1-63 characters (containers are found by name)"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {

    #[test]
    fn ipv6_only_macs_are_unique_in_a_network_and_differ_between_networks() {
        let mac = |s: &str| Mac::from_ip6(s.parse().unwrap());
        assert_ne!(mac("2001:db8:30::2"), mac("2001:db8:30::3"));
        assert_ne!(mac("2001:db8:30::2"), mac("2001:db8:31::2"));
        assert_eq!(mac("2001:db8:30::2").0[..2], [0x02, 0x42], "unicast, local");
    }
    use super::*;

    #[test]
    fn sandbox_names_and_aliases_are_dns_names() {
        validate_dns_name("sandbox", "web").unwrap();
        validate_dns_name("alias", "db.internal").unwrap();
        validate_dns_name("sandbox", &"a".repeat(63)).unwrap();
        for bad in ["a..b", &"a".repeat(64), "web..x"] {
            let e = validate_dns_name("sandbox", bad);
            assert!(e.is_err(), "{bad} accepted");
        }
        let e = validate_dns_name("alias", "a..b").unwrap_err().message;
        assert!(e.contains("must be a DNS name"), "{e}");
    }

    #[test]
    fn macs_parse_and_print() {
        let m = Mac::from_ip(Ipv4Addr::new(172, 17, 0, 2));
        assert_eq!(m.to_string(), "02:42:ac:11:00:02");
        assert_eq!(Mac::parse("02:42:ac:11:00:02").unwrap(), m);
        assert!(Mac::parse("01:00:5e:00:00:01").is_err(), "multicast");
        assert!(Mac::parse("02:42:ac:11:00").is_err());
        assert!(Mac::parse("02:42:ac:11:00:zz").is_err());
    }

    #[test]
    fn names_follow_docker_rules() {
        assert!(validate_name("network", "front-end_1.x").is_ok());
        assert!(validate_name("network", "-bad").is_err());
        assert!(validate_name("network", "a/b").is_err());
        assert!(validate_name("network", "").is_err());
    }
}
