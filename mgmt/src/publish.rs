//! Published ports as `docker run -p` takes them: `[HOSTIP:][HOSTPORT:]PORT[/PROTO]`,
//! `HOSTIP::PORT` (any free host port), and `-P` with `--expose PORT[/PROTO]`.

use std::fmt;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult};

/// Host ports `-P` and `-p PORT` pick from (Linux's default ephemeral range, as Docker).
pub const EPHEMERAL: std::ops::RangeInclusive<u16> = 32768..=60999;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

impl Proto {
    pub fn nat(self) -> nat::Proto {
        match self {
            Proto::Tcp => nat::Proto::Tcp,
            Proto::Udp => nat::Proto::Udp,
        }
    }
}

/// One published port of a sandbox, as persisted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    pub proto: Proto,
    /// None: every address of the switch (0.0.0.0).
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub port: u16,
}

impl Binding {
    /// Whether two bindings claim the same host port (a wildcard claims every address).
    pub fn clashes(&self, o: &Binding) -> bool {
        self.proto == o.proto
            && self.host_port == o.host_port
            && (self.host_ip.is_none() || o.host_ip.is_none() || self.host_ip == o.host_ip)
    }

    pub fn host(&self) -> String {
        format!(
            "{}:{}",
            self.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
            self.host_port
        )
    }
}

/// A `-p` value before host ports are chosen: host_port 0 means "pick one".
pub fn parse(spec: &str) -> ApiResult<Binding> {
    let bad = |why: &str| {
        ApiError::invalid(format!(
            "invalid publish spec {spec:?}: {why} (expected [HOSTIP:][HOSTPORT:]PORT[/tcp|udp])"
        ))
    };
    let (addr, proto) = match spec.rsplit_once('/') {
        Some((a, p)) => (
            a,
            parse_proto(p).map_err(|_| bad("protocol must be tcp or udp"))?,
        ),
        None => (spec, Proto::Tcp),
    };
    let parts: Vec<&str> = addr.split(':').collect();
    let (host_ip, host_port, port) = match parts.as_slice() {
        [p] => (None, "", *p),
        [h, p] => (None, *h, *p),
        [ip, h, p] => (Some(*ip), *h, *p),
        _ => return Err(bad("too many ':'")),
    };
    let host_ip = match host_ip {
        None | Some("") | Some("0.0.0.0") => None,
        Some(ip) => Some(
            ip.parse::<Ipv4Addr>()
                .map_err(|_| bad("host IP must be an IPv4 address"))?,
        ),
    };
    let port = parse_port(port).ok_or_else(|| bad("container port must be 1-65535"))?;
    let host_port = if host_port.is_empty() {
        0
    } else if host_port.contains('-') {
        return Err(bad("port ranges are not supported"));
    } else {
        parse_port(host_port).ok_or_else(|| bad("host port must be 1-65535"))?
    };
    Ok(Binding {
        proto,
        host_ip,
        host_port,
        port,
    })
}

/// An `--expose` value: `PORT[/PROTO]`.
pub fn parse_expose(spec: &str) -> ApiResult<(u16, Proto)> {
    let (p, proto) = match spec.rsplit_once('/') {
        Some((p, pr)) => (p, parse_proto(pr)?),
        None => (spec, Proto::Tcp),
    };
    let port = parse_port(p).ok_or_else(|| {
        ApiError::invalid(format!(
            "invalid --expose {spec:?}: expected PORT[/tcp|udp]"
        ))
    })?;
    Ok((port, proto))
}

fn parse_proto(p: &str) -> ApiResult<Proto> {
    match p {
        "tcp" => Ok(Proto::Tcp),
        "udp" => Ok(Proto::Udp),
        o => Err(ApiError::invalid(format!(
            "invalid protocol {o:?}: expected tcp or udp"
        ))),
    }
}

fn parse_port(s: &str) -> Option<u16> {
    s.parse::<u16>().ok().filter(|p| *p != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_forms() {
        let b = |proto, host_ip: Option<[u8; 4]>, host_port, port| Binding {
            proto,
            host_ip: host_ip.map(Ipv4Addr::from),
            host_port,
            port,
        };
        assert_eq!(parse("8080:80").unwrap(), b(Proto::Tcp, None, 8080, 80));
        assert_eq!(parse("5353:53/udp").unwrap(), b(Proto::Udp, None, 5353, 53));
        assert_eq!(
            parse("198.51.100.2:8080:80/tcp").unwrap(),
            b(Proto::Tcp, Some([198, 51, 100, 2]), 8080, 80)
        );
        assert_eq!(
            parse("0.0.0.0:8080:80").unwrap(),
            b(Proto::Tcp, None, 8080, 80)
        );
        assert_eq!(
            parse("80").unwrap(),
            b(Proto::Tcp, None, 0, 80),
            "host port picked later"
        );
        assert_eq!(
            parse("198.51.100.2::80").unwrap(),
            b(Proto::Tcp, Some([198, 51, 100, 2]), 0, 80)
        );
    }

    #[test]
    fn refuses_bad_specs_with_reasons() {
        for (s, why) in [
            ("8080:80/sctp", "protocol"),
            ("1:2:3:4", "too many"),
            ("8080:0", "container port"),
            ("70000:80", "host port"),
            ("8000-8010:80", "ranges"),
            ("x.y:80:80", "IPv4"),
            ("", "container port"),
        ] {
            let e = parse(s).unwrap_err().message;
            assert!(e.contains(why), "{s}: {e}");
        }
        assert_eq!(parse_expose("53/udp").unwrap(), (53, Proto::Udp));
        assert!(parse_expose("http").is_err());
    }

    #[test]
    fn clashes_follow_wildcards() {
        let any = parse("8080:80").unwrap();
        let one = parse("198.51.100.2:8080:81").unwrap();
        let other = parse("198.51.100.3:8080:81").unwrap();
        let udp = parse("8080:80/udp").unwrap();
        assert!(any.clashes(&one) && one.clashes(&any));
        assert!(!one.clashes(&other));
        assert!(!any.clashes(&udp));
        assert_eq!(any.host(), "0.0.0.0:8080");
    }
}
