//! Docker's remote network driver protocol (moby `libnetwork/docs/remote.md`,
//! `libnetwork/drivers/remote/api`): the requests dockerd POSTs to a plugin and what
//! it expects back, as serde types. Field names are Docker's (PascalCase); unknown
//! fields are ignored, as dockerd's own decoder does, since newer dockerds add some.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// A field dockerd may send as `null` (Go's nil map or slice): its default then.
pub fn nullable<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(
    d: D,
) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `Plugin.Activate`'s answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Activate {
    pub implements: Vec<&'static str>,
}

/// `NetworkDriver.GetCapabilities`'s answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Capabilities {
    pub scope: &'static str,
    pub connectivity_scope: &'static str,
}

/// One address pool of a network, as Docker's IPAM gave it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct IpamData {
    pub address_space: String,
    /// CIDR.
    pub pool: String,
    /// ADDRESS/LEN.
    pub gateway: String,
    #[serde(deserialize_with = "nullable")]
    pub aux_addresses: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CreateNetwork {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(deserialize_with = "nullable")]
    pub options: BTreeMap<String, Value>,
    #[serde(rename = "IPv4Data", deserialize_with = "nullable")]
    pub ipv4_data: Vec<IpamData>,
    #[serde(rename = "IPv6Data", deserialize_with = "nullable")]
    pub ipv6_data: Vec<IpamData>,
}

/// The `-o` options of `docker network create`.
pub const GENERIC: &str = "com.docker.network.generic";
pub const ENABLE_IPV6: &str = "com.docker.network.enable_ipv6";
pub const INTERNAL: &str = "com.docker.network.internal";
/// An endpoint's published ports (ProgramExternalConnectivity) and exposed ones.
pub const PORTMAP: &str = "com.docker.network.portmap";

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkOnly {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
}

/// The addresses Docker's IPAM chose (ADDRESS/LEN), and a MAC if one was asked for.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Interface {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub address: String,
    #[serde(rename = "AddressIPv6", skip_serializing_if = "String::is_empty")]
    pub address_ipv6: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub mac_address: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CreateEndpoint {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    pub interface: Option<Interface>,
    #[serde(deserialize_with = "nullable")]
    pub options: BTreeMap<String, Value>,
}

/// CreateEndpoint's answer: only what Docker did not give (a MAC), never an address
/// it gave (dockerd refuses that).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointCreated {
    pub interface: Option<Interface>,
}

/// DeleteEndpoint, EndpointOperInfo, Leave, RevokeExternalConnectivity.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct EndpointOnly {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct OperInfo {
    pub value: BTreeMap<String, Value>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Join {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    pub sandbox_key: String,
    #[serde(deserialize_with = "nullable")]
    pub options: BTreeMap<String, Value>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InterfaceName {
    /// The link Docker moves into the container.
    pub src_name: String,
    /// Docker names it this and an index (eth0, eth1...).
    pub dst_prefix: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct StaticRoute {
    pub destination: String,
    /// 0: through `NextHop`; 1: on the link.
    pub route_type: u8,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub next_hop: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Joined {
    pub interface_name: InterfaceName,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub gateway: String,
    #[serde(rename = "GatewayIPv6", skip_serializing_if = "String::is_empty")]
    pub gateway_ipv6: String,
    pub static_routes: Vec<StaticRoute>,
    /// Docker's own gateway bridge is not wanted: vswitch routes the network's egress.
    pub disable_gateway_service: bool,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ProgramExternal {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    #[serde(deserialize_with = "nullable")]
    pub options: BTreeMap<String, Value>,
}

/// One entry of [`PORTMAP`] (libnetwork `types.PortBinding`): `Proto` is the IP
/// protocol number (6 TCP, 17 UDP, 132 SCTP).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PortBinding {
    pub proto: u8,
    #[serde(rename = "IP")]
    pub ip: String,
    pub port: u16,
    #[serde(rename = "HostIP")]
    pub host_ip: String,
    pub host_port: u16,
    pub host_port_end: u16,
}

/// `{"Err": "..."}`: how a plugin says no.
#[derive(Debug, Serialize)]
pub struct Error {
    #[serde(rename = "Err")]
    pub err: String,
}
