//! Published ports as `docker run -p` takes them: `[HOSTIP:][HOSTPORT:]PORT[/PROTO]`,
//! `HOSTIP::PORT` (any free host port; an IPv6 HOSTIP in brackets, `[::1]:8080:80`), and
//! `-P` with `--expose PORT[/PROTO]`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

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
    /// None: every address (0.0.0.0 and, where the host has IPv6, [::]): the uplink's
    /// and the host's. Some: that address only (the uplink's, or one of the host's).
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub port: u16,
}

impl Binding {
    /// Whether two bindings claim the same host port (a wildcard claims every address,
    /// `[::]` every IPv6 one).
    pub fn clashes(&self, o: &Binding) -> bool {
        let covers = |a: Option<IpAddr>, b: Option<IpAddr>| match (a, b) {
            (None, _) | (_, None) => true,
            (Some(a), Some(b)) => a == b || (a.is_unspecified() && a.is_ipv6() == b.is_ipv6()),
        };
        self.proto == o.proto
            && self.host_port == o.host_port
            && (covers(self.host_ip, o.host_ip) || covers(o.host_ip, self.host_ip))
    }

    /// The host side as Docker writes it: `0.0.0.0:8080`, `[::1]:8080`.
    pub fn host(&self) -> String {
        let ip = self.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        SocketAddr::new(ip, self.host_port).to_string()
    }

    /// The address the NAT publishes on: IPv4 only (None: the uplink's).
    pub fn nat_ip(&self) -> Option<Ipv4Addr> {
        match self.host_ip {
            Some(IpAddr::V4(ip)) => Some(ip),
            _ => None,
        }
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
    // An IPv6 host address is bracketed: [::1]:8080:80.
    let (v6, addr) = match addr.strip_prefix('[') {
        Some(rest) => {
            let (ip, rest) = rest
                .split_once(']')
                .ok_or_else(|| bad("unclosed '[' around the host IP"))?;
            let rest = rest
                .strip_prefix(':')
                .ok_or_else(|| bad("expected ':' after the bracketed host IP"))?;
            (Some(ip), rest)
        }
        None => (None, addr),
    };
    let parts: Vec<&str> = addr.split(':').collect();
    let (host_ip, host_port, port) = match (v6, parts.as_slice()) {
        (None, [p]) => (None, "", *p),
        (None, [h, p]) => (None, *h, *p),
        (None, [ip, h, p]) => (Some(*ip), *h, *p),
        (Some(ip), [h, p]) => (Some(ip), *h, *p),
        (Some(_), [_]) => return Err(bad("a host IP needs a host port, or '::' before the port")),
        _ => return Err(bad("too many ':' (an IPv6 host IP goes in brackets)")),
    };
    let host_ip = match host_ip {
        None | Some("") | Some("0.0.0.0") if v6.is_none() => None,
        Some(ip) if v6.is_some() => {
            Some(IpAddr::V6(ip.parse().map_err(|_| {
                bad("the bracketed host IP must be an IPv6 address")
            })?))
        }
        Some(ip) => Some(IpAddr::V4(ip.parse().map_err(|_| {
            bad("host IP must be an IPv4 address, or IPv6 in brackets")
        })?)),
        None => None,
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
            host_ip: host_ip.map(|a| IpAddr::V4(a.into())),
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
        let v6 = parse("[::1]:8080:80/udp").unwrap();
        assert_eq!(v6.host_ip, Some("::1".parse().unwrap()));
        assert_eq!((v6.host_port, v6.port, v6.proto), (8080, 80, Proto::Udp));
        assert_eq!(v6.host(), "[::1]:8080");
        assert_eq!(v6.nat_ip(), None);
        assert_eq!(parse("[::]::80").unwrap().host_port, 0);
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
            ("::1:8080:80", "brackets"),
            ("[::1:8080:80", "unclosed"),
            ("[1.2.3.4]:8080:80", "IPv6"),
            ("[::1]80", "expected ':'"),
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
        let v6_any = parse("[::]:8080:80").unwrap();
        let v6_one = parse("[::1]:8080:80").unwrap();
        let lo = parse("127.0.0.1:8080:80").unwrap();
        assert!(v6_any.clashes(&v6_one) && v6_one.clashes(&v6_any));
        assert!(!v6_any.clashes(&lo) && any.clashes(&v6_one));
    }
}
