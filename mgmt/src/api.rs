//! The control socket's method parameters and results: shared by the daemon (which
//! validates parameters and builds results) and vswitchctl (which builds parameters
//! and reads results). Unknown parameter fields are refused. Results keep Docker's
//! field names where Docker has the object (`Name`, `Id`, `IPAM`, `Containers`...),
//! and the field names below are the wire format: renaming one breaks clients.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use switch::port::Backend;
use switch::stats::{PortCountersSnapshot, WorkerCountersSnapshot};
use switch::{DnsStats, NetId, PortId, RouterStats};

use crate::model::LinkKind;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkCreate {
    /// The id to give it (Docker's, for a network dockerd makes); not on the socket.
    #[serde(skip)]
    pub id: Option<String>,
    pub name: String,
    pub driver: Option<String>,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub ip_range: Option<String>,
    /// false: IPv6-only (Docker 28's `--ipv4=false`, with `ipv6`); absent: true.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<bool>,
    /// Dual-stack (Docker's `--ipv6`): an IPv6 pool beside the IPv4 one, `subnet6` or
    /// a /64 of the host's IPv6 pool.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ipv6: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnet6: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_range6: Option<String>,
    pub internal: bool,
    pub attachable: bool,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkLs {
    /// `driver=D` style filters.
    pub filters: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Names {
    pub names: Vec<String>,
}

/// How a sandbox's endpoint on a network is made: `network.connect` and
/// `sandbox.create` take these fields beside their own.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct EndpointParams {
    pub ip: Option<String>,
    /// The IPv6 address on a network with IPv6 (`--ip6`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip6: Option<String>,
    pub aliases: Vec<String>,
    pub mac: Option<String>,
    /// `veth` (the default) or `tap`.
    pub link: Option<String>,
    /// Port security (on unless false): the endpoint sends only from its own MAC and
    /// address, and `allowed_addresses`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port_security: Option<bool>,
    /// Extra IPv4 addresses or MACs the endpoint may send from (a virtual IP, a second
    /// MAC), as OVN's allowed-address-pairs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_addresses: Vec<String>,
}

impl EndpointParams {
    /// Whether any of the fields was given.
    pub fn any(&self) -> bool {
        self.ip.is_some()
            || self.ip6.is_some()
            || !self.aliases.is_empty()
            || self.mac.is_some()
            || self.link.is_some()
            || self.port_security.is_some()
            || !self.allowed_addresses.is_empty()
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Connect {
    pub network: String,
    pub sandbox: String,
    #[serde(flatten)]
    pub endpoint: EndpointParams,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Disconnect {
    pub network: String,
    pub sandbox: String,
    pub force: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxCreate {
    pub name: String,
    /// NET, host, none (default: bridge).
    pub network: Option<String>,
    #[serde(flatten)]
    pub endpoint: EndpointParams,
    pub publish: Vec<String>,
    pub publish_all: bool,
    pub expose: Vec<String>,
    /// `--add-host NAME:IP` (IP may be `host-gateway`: the host's address on the host
    /// port), written to the sandbox's /etc/hosts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub add_host: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxRm {
    pub name: String,
    pub force: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NameOnly {
    pub name: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatsGet {
    /// A port name (veth host end or TAP name) or endpoint's sandbox; all when absent.
    pub port: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureStart {
    /// A port: the switch-side interface name, SANDBOX, or SANDBOX:ethN.
    pub port: String,
    /// Absolute path of the pcap file the daemon writes: a new file (nothing may exist
    /// at the path) in a directory that exists.
    pub file: String,
    /// Stop after this many frames.
    pub count: Option<u64>,
    /// Stop before the file would grow past this many bytes (pcap header and records
    /// included); the daemon's default (256 MiB) when absent. Left out of requests
    /// when absent, so a client that does not set it still talks to older daemons.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureId {
    pub id: u64,
}

/// Methods that take no parameters still refuse unknown ones.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Conntrack {
    /// Only sessions of this network's addresses.
    pub network: Option<String>,
}

// ---- results ---------------------------------------------------------------------

/// `network.create`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkCreated {
    pub id: String,
    /// Always empty (Docker's field).
    pub warning: String,
}

/// One row of `network.ls`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkSummary {
    /// The id's first 12 characters.
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    pub driver: String,
    pub scope: String,
}

/// One network of `network.inspect`, as `docker network inspect` shows it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkDetail {
    pub name: String,
    pub id: String,
    pub created: String,
    pub scope: String,
    pub driver: String,
    #[serde(rename = "EnableIPv6")]
    pub enable_ipv6: bool,
    #[serde(rename = "IPAM")]
    pub ipam: Ipam,
    pub internal: bool,
    pub attachable: bool,
    /// By sandbox id.
    pub containers: BTreeMap<String, NetworkContainer>,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// Global networks: the hosts with endpoints on it, this one included (Docker's
    /// `Peers` of a swarm overlay); floods are replicated to the others' VTEPs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<Peer>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Peer {
    pub name: String,
    #[serde(rename = "IP")]
    pub ip: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Ipam {
    /// Always "default".
    pub driver: String,
    pub options: BTreeMap<String, String>,
    pub config: Vec<IpamConfig>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IpamConfig {
    pub subnet: String,
    pub gateway: String,
    #[serde(rename = "IPRange", default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<String>,
}

/// A sandbox's endpoint on a network, in `network.inspect`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkContainer {
    pub name: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    pub mac_address: String,
    /// ADDRESS/PREFIX.
    #[serde(rename = "IPv4Address")]
    pub ipv4_address: String,
    /// ADDRESS/PREFIX; empty without IPv6.
    #[serde(rename = "IPv6Address")]
    pub ipv6_address: String,
}

/// `network.prune`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Pruned {
    pub networks_deleted: Vec<String>,
}

/// `sandbox.create`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SandboxCreated {
    pub id: String,
    pub name: String,
}

/// One row of `sandbox.ls`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SandboxSummary {
    /// The id's first 12 characters.
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    /// Network names, or the mode (`host`, `none`, `container:NAME`).
    pub networks: Vec<String>,
    pub created: String,
}

/// `sandbox.inspect`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SandboxDetail {
    pub id: String,
    pub name: String,
    pub created: String,
    /// `netns`, `host`, `none` or `container:NAME`.
    pub network_mode: String,
    /// The namespace's bind mount (/run/netns/NAME).
    pub sandbox_key: String,
    /// Docker's shape: {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}.
    pub ports: BTreeMap<String, Vec<PortBinding>>,
    /// By network name.
    pub networks: BTreeMap<String, SandboxNetwork>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PortBinding {
    pub host_ip: String,
    pub host_port: String,
}

/// A sandbox's endpoint, in `sandbox.inspect`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SandboxNetwork {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    #[serde(rename = "IPAddress")]
    pub ip_address: String,
    #[serde(rename = "IPPrefixLen")]
    pub ip_prefix_len: u8,
    /// Empty where the network has no pool.
    pub gateway: String,
    /// Docker's IPv6 fields: empty (0) without IPv6.
    #[serde(rename = "GlobalIPv6Address")]
    pub global_ipv6_address: String,
    #[serde(rename = "GlobalIPv6PrefixLen")]
    pub global_ipv6_prefix_len: u8,
    #[serde(rename = "IPv6Gateway")]
    pub ipv6_gateway: String,
    pub mac_address: String,
    pub aliases: Vec<String>,
    pub link: LinkKind,
    pub interface: String,
    /// The veth's switch-side end; null for a TAP.
    pub host_interface: Option<String>,
}

/// One row of `fdb.get`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FdbRow {
    pub mac: String,
    /// The port's name, `vxlan` for the tunnel, or its number.
    pub port: String,
    /// The remote VTEP of a MAC behind the tunnel.
    pub vtep: Option<String>,
    /// The sandbox owning the port, if an endpoint does.
    pub sandbox: Option<String>,
    /// Seconds since last seen.
    pub age: u64,
    #[serde(rename = "static")]
    pub is_static: bool,
    pub fast_path: bool,
}

/// `capture.start`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CaptureStarted {
    pub id: u64,
}

/// Why a capture ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaptureEnd {
    /// It wrote the `count` frames asked for.
    Count,
    /// The next frame would have taken the file past `max_bytes`.
    MaxBytes,
    /// `capture.stop` (or the daemon shutting down) ended it.
    Stopped,
    /// The port went away.
    PortGone,
    /// Writing the file failed; `error` says how.
    Failed,
}

/// `capture.status`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CaptureState {
    pub frames: u64,
    pub done: bool,
    /// Bytes in the file so far (the pcap header included).
    #[serde(default)]
    pub bytes: u64,
    /// Set once `done`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<CaptureEnd>,
    /// What writing the file failed with (`reason` is `failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `capture.stop`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CaptureStopped {
    pub frames: u64,
    #[serde(default)]
    pub bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<CaptureEnd>,
}

/// `daemon.ping`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Ping {
    pub version: String,
}

/// `stats.get`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Stats {
    pub ports: Vec<PortStats>,
    pub workers: Vec<WorkerCountersSnapshot>,
    /// The router's counters; null without an uplink.
    pub router: Option<Router>,
    /// The embedded resolver's counters.
    pub dns: Option<DnsStats>,
    /// The host port's addresses and counters; null without one.
    #[serde(default)]
    pub host_port: Option<switch::host_link::HostPortStats>,
}

/// One port of `stats.get`: the engine's view of it, its counters, and whose it is.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PortStats {
    pub id: PortId,
    pub name: String,
    /// The endpoint's network by name, the switch port's role (`(uplink)`...), or the
    /// data plane's network number.
    pub network: Option<PortNetwork>,
    pub backend: Backend,
    pub worker: usize,
    pub fast_path: bool,
    #[serde(flatten)]
    pub counters: PortCountersSnapshot,
    /// The endpoint's sandbox; absent for the switch's own ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
}

/// The router's `RouterStats` as they are, and its VTEP's decapsulation drops also by
/// name under `overlay.drops` (`overlay.dropped` is indexed by `DropReason::ALL`).
#[derive(Clone, Debug)]
pub struct Router(pub RouterStats);

impl Router {
    /// The VTEP's decapsulation drops by reason name.
    pub fn overlay_drops(&self) -> BTreeMap<String, u64> {
        vxlan::DropReason::ALL
            .iter()
            .filter_map(|r| {
                let name = serde_json::to_value(r).ok()?.as_str()?.to_string();
                Some((name, self.0.overlay.dropped(*r)))
            })
            .collect()
    }
}

impl Serialize for Router {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut v = serde_json::to_value(&self.0).map_err(serde::ser::Error::custom)?;
        if let Some(o) = v.get_mut("overlay").and_then(|o| o.as_object_mut()) {
            let drops =
                serde_json::to_value(self.overlay_drops()).map_err(serde::ser::Error::custom)?;
            o.insert("drops".into(), drops);
        }
        v.serialize(s)
    }
}

/// `overlay.drops` is derived: reading it back ignores it.
impl<'de> Deserialize<'de> for Router {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        RouterStats::deserialize(d).map(Router)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PortNetwork {
    Name(String),
    Number(NetId),
}

impl std::fmt::Display for PortNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PortNetwork::Name(n) => f.write_str(n),
            PortNetwork::Number(n) => write!(f, "{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The results' field names are the wire format (Docker's where Docker has the
    /// object): these are the names clients and the e2e tests read.
    #[test]
    fn results_keep_their_wire_names() {
        let mut containers = BTreeMap::new();
        containers.insert(
            "sbid".to_string(),
            NetworkContainer {
                name: "web".into(),
                endpoint_id: "ep".into(),
                mac_address: "02:42:ac:14:00:02".into(),
                ipv4_address: "172.20.0.2/16".into(),
                ipv6_address: String::new(),
            },
        );
        let net = NetworkDetail {
            name: "n".into(),
            id: "abc".into(),
            created: "t".into(),
            scope: "local".into(),
            driver: "bridge".into(),
            enable_ipv6: false,
            ipam: Ipam {
                driver: "default".into(),
                options: BTreeMap::new(),
                config: vec![IpamConfig {
                    subnet: "172.20.0.0/16".into(),
                    gateway: "172.20.0.1".into(),
                    ip_range: None,
                }],
            },
            internal: false,
            attachable: true,
            containers,
            options: BTreeMap::new(),
            labels: BTreeMap::new(),
            peers: Vec::new(),
        };
        assert_eq!(
            serde_json::to_value(&net).unwrap(),
            json!({
                "Name": "n", "Id": "abc", "Created": "t", "Scope": "local", "Driver": "bridge",
                "EnableIPv6": false,
                "IPAM": { "Driver": "default", "Options": {},
                          "Config": [{ "Subnet": "172.20.0.0/16", "Gateway": "172.20.0.1" }] },
                "Internal": false, "Attachable": true,
                "Containers": { "sbid": { "Name": "web", "EndpointID": "ep",
                    "MacAddress": "02:42:ac:14:00:02", "IPv4Address": "172.20.0.2/16",
                    "IPv6Address": "" } },
                "Options": {}, "Labels": {},
            })
        );
        let row = FdbRow {
            mac: "m".into(),
            port: "p".into(),
            vtep: None,
            sandbox: Some("s".into()),
            age: 3,
            is_static: true,
            fast_path: false,
        };
        assert_eq!(
            serde_json::to_value(&row).unwrap(),
            json!({ "mac": "m", "port": "p", "vtep": null, "sandbox": "s", "age": 3,
                    "static": true, "fast_path": false })
        );
        let summary = SandboxSummary {
            id: "0123456789ab".into(),
            name: "s".into(),
            networks: vec!["bridge".into()],
            created: "t".into(),
        };
        assert_eq!(
            serde_json::to_value(&summary).unwrap(),
            json!({ "ID": "0123456789ab", "Name": "s", "Networks": ["bridge"], "Created": "t" })
        );
    }

    /// The endpoint's fields sit beside the method's own (one flat object), may be left
    /// out, and unknown fields next to them are still refused.
    #[test]
    fn endpoint_params_are_flat_and_unknown_fields_refused() {
        let c: Connect = serde_json::from_value(json!({
            "network": "n", "sandbox": "s", "ip": "10.0.0.2", "aliases": ["a"], "link": "tap",
        }))
        .unwrap();
        assert_eq!(c.endpoint.ip.as_deref(), Some("10.0.0.2"));
        assert_eq!(c.endpoint.aliases, ["a"]);
        assert_eq!(
            (c.endpoint.mac, c.endpoint.link.as_deref()),
            (None, Some("tap"))
        );
        let sb: SandboxCreate =
            serde_json::from_value(json!({ "name": "s", "publish_all": true })).unwrap();
        assert!(!sb.endpoint.any() && sb.publish_all);
        assert_eq!(
            serde_json::to_value(&sb).unwrap(),
            json!({ "name": "s", "network": null, "ip": null, "aliases": [], "mac": null,
                    "link": null, "publish": [], "publish_all": true, "expose": [] })
        );
        let e = serde_json::from_value::<Connect>(json!({ "network": "n", "bogus": 1 }));
        assert!(e.unwrap_err().to_string().contains("unknown field `bogus`"));
        assert!(serde_json::from_value::<Connect>(json!({ "ip": 5 })).is_err());
        assert!(serde_json::from_value::<SandboxCreate>(json!({ "name": "s", "x": 1 })).is_err());
    }

    /// A port's row: the engine's fields and counters side by side, `sandbox` only for
    /// an endpoint, and the network by name or by number; and it reads back.
    #[test]
    fn port_stats_are_flat_and_read_back() {
        let row = PortStats {
            id: 3,
            name: "vsh1".into(),
            network: Some(PortNetwork::Number(7)),
            backend: Backend::Tap,
            worker: 0,
            fast_path: false,
            counters: PortCountersSnapshot::default(),
            sandbox: None,
        };
        let v = serde_json::to_value(&row).unwrap();
        assert_eq!(v["network"], json!(7));
        assert_eq!(v["rx_packets"], json!(0));
        assert!(v.get("sandbox").is_none(), "{v}");
        let back: PortStats = serde_json::from_value(v).unwrap();
        assert_eq!(back.network, Some(PortNetwork::Number(7)));
        let named: PortStats = serde_json::from_value(json!({
            "id": 1, "name": "x", "network": "(uplink)", "backend": "tap", "worker": 0,
            "fast_path": false, "rx_packets": 1, "rx_bytes": 2, "tx_packets": 3, "tx_bytes": 4,
            "fdb_full": 0, "drops": { "trunk_kernel": 5 }, "backend_counters": {},
            "sandbox": "web",
        }))
        .unwrap();
        assert_eq!(named.network, Some(PortNetwork::Name("(uplink)".into())));
        assert_eq!(named.counters.drops["trunk_kernel"], 5);
        assert_eq!(named.sandbox.as_deref(), Some("web"));
    }

    /// The router's counters as the engine has them, plus the VTEP's drops by name;
    /// reading them back ignores the derived names.
    #[test]
    fn router_stats_carry_the_overlay_drops_by_name() {
        let mut overlay = vxlan::Counters::default();
        overlay.dropped[vxlan::DropReason::ALL[1].index()] = 4;
        let r = Router(RouterStats {
            uplink_port: 0,
            router: Default::default(),
            nat: Default::default(),
            arp: Default::default(),
            ndp: Default::default(),
            sessions: 2,
            fast_path_sessions: 0,
            fast_path_tunnel_macs: 0,
            vtep: std::net::Ipv4Addr::new(10, 0, 0, 1),
            overlay,
        });
        let v = serde_json::to_value(&r).unwrap();
        let name = serde_json::to_value(vxlan::DropReason::ALL[1]).unwrap();
        assert_eq!(v["overlay"]["drops"][name.as_str().unwrap()], json!(4));
        assert_eq!(v["overlay"]["dropped"][1], json!(4));
        assert_eq!(v["sessions"], json!(2));
        let back: Router = serde_json::from_value(v).unwrap();
        assert_eq!(back.0.overlay.dropped[1], 4);
    }
}

/// `cluster.info`: the cluster store as this host sees it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ClusterInfo {
    pub store: crate::cluster::Health,
    pub nodes: Vec<ClusterNode>,
    pub networks: Vec<ClusterNetwork>,
    /// Local endpoints of global networks not published: their address was taken by
    /// another host while this one was away (longer than its lease). Disconnect and
    /// connect them again for a new address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unpublished: Vec<Unpublished>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Unpublished {
    pub network: String,
    pub sandbox: String,
    pub ip: String,
    /// Who holds the address now, or why it could not be published.
    pub why: String,
}

/// A host registered in the store (its key lives while its lease does).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ClusterNode {
    pub name: String,
    pub vtep: String,
    pub started: String,
    /// Its endpoints on global networks.
    pub endpoints: usize,
    pub this_host: bool,
    pub lease: String,
}

/// A global network in the store.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ClusterNetwork {
    pub name: String,
    pub id: String,
    pub vni: u32,
    pub subnet: String,
    /// Other hosts' endpoints on it.
    pub remote_endpoints: usize,
    /// Why this host did not take it (a clash with a local network), if it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

/// `cni.add`: attach a CNI runtime's container (`vswitch-cni` ADD) to a network.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CniAdd {
    pub container_id: String,
    /// CNI_NETNS: the namespace file.
    pub netns: String,
    /// CNI_IFNAME.
    pub ifname: String,
    /// The vswitch network (name or id).
    pub network: String,
    /// Create the network (bridge) with this subnet if it does not exist.
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub ip: Option<String>,
    pub ip6: Option<String>,
    pub mac: Option<String>,
    /// A name the embedded DNS answers for it (K8S_POD_NAME, podman's container name).
    pub name: Option<String>,
    pub port_mappings: Vec<CniPortMapping>,
}

/// One of CNI's `portMappings` (runtimeConfig).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct CniPortMapping {
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: String,
    #[serde(rename = "hostIP")]
    pub host_ip: String,
}

/// `cni.del`, `cni.check`: one attachment.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CniKey {
    pub container_id: String,
    pub ifname: String,
}

/// `cni.gc`: the attachments of `network` still valid; the rest go.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CniGc {
    pub network: String,
    pub valid: Vec<CniKey>,
}

/// What ADD answers: the CNI result's parts (the plugin adds `cniVersion`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CniResult {
    pub interfaces: Vec<CniInterface>,
    pub ips: Vec<CniIp>,
    pub routes: Vec<CniRoute>,
    pub dns: CniDns,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CniInterface {
    pub name: String,
    pub mac: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CniIp {
    /// ADDRESS/LEN.
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    pub interface: usize,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CniRoute {
    pub dst: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CniDns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
}
