//! The control socket's method parameters: shared by the daemon (which validates them)
//! and vswitchctl (which builds them). Unknown fields are refused.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkCreate {
    pub name: String,
    pub driver: Option<String>,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub ip_range: Option<String>,
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

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Connect {
    pub network: String,
    pub sandbox: String,
    pub ip: Option<String>,
    pub aliases: Vec<String>,
    pub mac: Option<String>,
    pub link: Option<String>,
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
    pub ip: Option<String>,
    pub aliases: Vec<String>,
    pub mac: Option<String>,
    pub publish: Vec<String>,
    pub publish_all: bool,
    pub expose: Vec<String>,
    pub link: Option<String>,
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
    /// Absolute path of the pcap file the daemon writes.
    pub file: String,
    /// Stop after this many frames.
    pub count: Option<u64>,
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
