//! The command line of `pktgen tx` and `pktgen rx` (clap derive), with the parsers for
//! its value syntaxes: ranges `A[-B]` (addresses of either family), frame sizes
//! `N|MIN-MAX|imix`, rates `PPS|BPSbps`. A value that does not parse is a usage error
//! (exit 2), reported by clap.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

/// Smallest and largest frame pktgen builds (without FCS): the Ethernet minimum, and the
/// largest frame a switch port carries.
pub const MIN_FRAME: usize = 60;
pub const MAX_FRAME: usize = switch::port::MAX_FRAME;

#[derive(Parser, Debug)]
#[command(
    name = "pktgen",
    version,
    about = "vswitch lab packet generator and sink"
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Generate frames on an interface (or into a pcap file).
    // Boxed: its address ranges (IPv6-wide) make it five times RxArgs' size.
    Tx(Box<TxArgs>),
    /// Count frames arriving on an interface; report loss, reordering and latency.
    Rx(RxArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TxBackend {
    #[value(name = "af_xdp")]
    AfXdp,
    #[value(name = "af_packet")]
    AfPacket,
    Tap,
    #[value(name = "xdp-live")]
    XdpLive,
}

impl TxBackend {
    pub fn name(self) -> &'static str {
        match self {
            TxBackend::AfXdp => "af_xdp",
            TxBackend::AfPacket => "af_packet",
            TxBackend::Tap => "tap",
            TxBackend::XdpLive => "xdp-live",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RxBackend {
    #[value(name = "af_xdp")]
    AfXdp,
    #[value(name = "af_packet")]
    AfPacket,
    #[value(name = "xdp-count")]
    XdpCount,
}

impl RxBackend {
    pub fn name(self) -> &'static str {
        match self {
            RxBackend::AfXdp => "af_xdp",
            RxBackend::AfPacket => "af_packet",
            RxBackend::XdpCount => "xdp-count",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Proto {
    Udp,
    #[value(name = "tcp-syn")]
    TcpSyn,
}

#[derive(Args, Debug)]
pub struct TxArgs {
    /// Interface to send on (not needed with --pcap).
    #[arg(long)]
    pub iface: Option<String>,
    #[arg(long, value_enum, default_value = "af_packet")]
    pub backend: TxBackend,
    /// Sender threads, one pinned per core.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub threads: u32,
    /// Frame size without FCS: N, MIN-MAX, or imix (7:4:1 of 64/576/1500).
    #[arg(long, default_value = "64", value_parser = parse_size)]
    pub size: SizeSpec,
    #[arg(long, value_enum, default_value = "udp")]
    pub proto: Proto,
    /// Flows to cycle through; each field steps through its range. Default: the widest range.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub flows: Option<u32>,
    /// Source MAC or MAC range (default: the interface's MAC).
    #[arg(long, value_parser = parse_mac_range)]
    pub src_mac: Option<Range<[u8; 6]>>,
    #[arg(long, default_value = "02:00:00:00:00:02", value_parser = parse_mac_range)]
    pub dst_mac: Range<[u8; 6]>,
    /// Source address or range, IPv4 or IPv6 (IPv6 addresses make IPv6 frames).
    /// Default: 198.51.100.1, or 2001:db8::1 when --dst-ip is IPv6.
    #[arg(long, value_parser = parse_ip_range)]
    pub src_ip: Option<Range<IpAddr>>,
    /// Destination address or range, of the source's family. Default: 198.51.100.2, or
    /// 2001:db8::2 when --src-ip is IPv6.
    #[arg(long, value_parser = parse_ip_range)]
    pub dst_ip: Option<Range<IpAddr>>,
    #[arg(long, default_value = "1024", value_parser = parse_port_range)]
    pub sport: Range<u16>,
    #[arg(long, default_value = "9", value_parser = parse_port_range)]
    pub dport: Range<u16>,
    /// Encapsulate in VXLAN with this VNI (needs --outer-src, --outer-dst, --outer-dst-mac).
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..(1 << 24)),
          requires_all = ["outer_src", "outer_dst", "outer_dst_mac"])]
    pub vxlan: Option<u32>,
    #[arg(long, requires = "vxlan")]
    pub outer_src: Option<Ipv4Addr>,
    #[arg(long, requires = "vxlan")]
    pub outer_dst: Option<Ipv4Addr>,
    #[arg(long, requires = "vxlan", value_parser = parse_mac)]
    pub outer_dst_mac: Option<[u8; 6]>,
    /// Target rate: packets per second (10000, 1.5M) or bits per second (100Mbps).
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<Rate>,
    /// Frames to send in total (over all threads).
    #[arg(long, conflicts_with = "duration", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Seconds to send for.
    #[arg(long, value_parser = parse_secs)]
    pub duration: Option<f64>,
    /// Write the frames to this pcap file instead of sending them.
    #[arg(long)]
    pub pcap: Option<PathBuf>,
    /// Print the final report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct RxArgs {
    #[arg(long)]
    pub iface: String,
    #[arg(long, value_enum, default_value = "af_packet")]
    pub backend: RxBackend,
    /// Seconds to count for (default: until interrupted).
    #[arg(long, value_parser = parse_secs)]
    pub duration: Option<f64>,
    #[arg(long)]
    pub json: bool,
}

/// An inclusive range of values; a single value is a range of one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range<T> {
    pub lo: T,
    pub hi: T,
}

impl<T: Copy> Range<T> {
    pub fn one(v: T) -> Self {
        Range { lo: v, hi: v }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SizeSpec {
    Fixed(usize),
    Range(usize, usize),
    Imix,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rate {
    Pps(f64),
    Bps(f64),
}

fn split_range(s: &str) -> (&str, Option<&str>) {
    match s.split_once('-') {
        Some((a, b)) => (a.trim(), Some(b.trim())),
        None => (s.trim(), None),
    }
}

/// `A` or `A-B`, each end parsed by `one`, in order (`what` names the range in the
/// error when it runs backwards).
fn parse_range<T: PartialOrd + Copy + std::fmt::Display>(
    s: &str,
    what: &str,
    one: impl Fn(&str) -> Result<T, String>,
) -> Result<Range<T>, String> {
    let (a, b) = split_range(s);
    let lo = one(a)?;
    let hi = b.map(one).transpose()?.unwrap_or(lo);
    if hi < lo {
        return Err(format!("{what} range {lo}-{hi} runs backwards"));
    }
    Ok(Range { lo, hi })
}

/// The addresses a flow takes when the command line names none (RFC 5737 and RFC 3849
/// documentation ranges), per family: (source, destination).
pub const DEFAULT_V4: (Ipv4Addr, Ipv4Addr) = (
    Ipv4Addr::new(198, 51, 100, 1),
    Ipv4Addr::new(198, 51, 100, 2),
);
pub const DEFAULT_V6: (Ipv6Addr, Ipv6Addr) = (
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2),
);

/// An IPv4 or IPv6 address range; both ends of one family.
pub fn parse_ip_range(s: &str) -> Result<Range<IpAddr>, String> {
    let r = parse_range(s, "address", |t| {
        t.parse::<IpAddr>()
            .map_err(|_| format!("{t:?} is not an IPv4 or IPv6 address"))
    })?;
    if r.lo.is_ipv4() != r.hi.is_ipv4() {
        return Err(format!("address range {s:?} mixes IPv4 and IPv6"));
    }
    Ok(r)
}

/// The source and destination ranges of a run: the family is the one the given
/// addresses have (IPv4 when none is given), the missing side that family's default.
pub fn ip_pair(
    src: Option<Range<IpAddr>>,
    dst: Option<Range<IpAddr>>,
) -> Result<(Range<IpAddr>, Range<IpAddr>), String> {
    let v6 = src.or(dst).is_some_and(|r| r.lo.is_ipv6());
    let (dsrc, ddst): (IpAddr, IpAddr) = if v6 {
        (DEFAULT_V6.0.into(), DEFAULT_V6.1.into())
    } else {
        (DEFAULT_V4.0.into(), DEFAULT_V4.1.into())
    };
    let src = src.unwrap_or(Range::one(dsrc));
    let dst = dst.unwrap_or(Range::one(ddst));
    if src.lo.is_ipv6() != dst.lo.is_ipv6() {
        return Err(format!(
            "--src-ip {} and --dst-ip {} are of different families; give both as IPv4 or both as IPv6",
            src.lo, dst.lo
        ));
    }
    Ok((src, dst))
}

pub fn parse_port_range(s: &str) -> Result<Range<u16>, String> {
    parse_range(s, "port", |t| {
        t.parse()
            .map_err(|_| format!("{t:?} is not a port number (0-65535)"))
    })
}

pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let bad = || format!("{s:?} is not a MAC address (like 02:00:00:00:00:01)");
    let mut mac = [0u8; 6];
    let mut parts = s.trim().split(':');
    for byte in mac.iter_mut() {
        let p = parts.next().ok_or_else(bad)?;
        if p.is_empty() || p.len() > 2 {
            return Err(bad());
        }
        *byte = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(mac)
}

pub fn parse_mac_range(s: &str) -> Result<Range<[u8; 6]>, String> {
    let (a, b) = split_range(s);
    let lo = parse_mac(a)?;
    let hi = b.map(parse_mac).transpose()?.unwrap_or(lo);
    if mac_to_u64(hi) < mac_to_u64(lo) {
        return Err(format!("MAC range {s:?} runs backwards"));
    }
    Ok(Range { lo, hi })
}

pub fn mac_to_u64(m: [u8; 6]) -> u64 {
    m.iter().fold(0, |acc, &b| (acc << 8) | u64::from(b))
}

pub fn u64_to_mac(v: u64) -> [u8; 6] {
    let b = v.to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

pub fn parse_size(s: &str) -> Result<SizeSpec, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("imix") {
        return Ok(SizeSpec::Imix);
    }
    let n = |t: &str| -> Result<usize, String> {
        let v = t
            .parse::<usize>()
            .map_err(|_| format!("{t:?} is not a frame size (N, MIN-MAX or imix)"))?;
        if !(MIN_FRAME..=MAX_FRAME).contains(&v) {
            return Err(format!(
                "frame size {v} is outside {MIN_FRAME}-{MAX_FRAME} bytes"
            ));
        }
        Ok(v)
    };
    let r = parse_range(s, "frame size", n)?;
    Ok(if r.lo == r.hi {
        SizeSpec::Fixed(r.lo)
    } else {
        SizeSpec::Range(r.lo, r.hi)
    })
}

/// `10000`, `1.5M`, `2k` packets per second, or `100Mbps`, `1Gbps`, `512kbps`, `9600bps`.
pub fn parse_rate(s: &str) -> Result<Rate, String> {
    let t = s.trim();
    let bad = || format!("{s:?} is not a rate (like 10000, 1.5M, 100Mbps or 1Gbps)");
    let lower = t.to_ascii_lowercase();
    let (num, bits) = match lower.strip_suffix("bps") {
        Some(n) => (n.to_string(), true),
        None => (
            lower.strip_suffix("pps").unwrap_or(&lower).to_string(),
            false,
        ),
    };
    let (digits, mult) = match num.chars().last() {
        Some('k') => (&num[..num.len() - 1], 1e3),
        Some('m') => (&num[..num.len() - 1], 1e6),
        Some('g') => (&num[..num.len() - 1], 1e9),
        _ => (num.as_str(), 1.0),
    };
    let v: f64 = digits.trim().parse().map_err(|_| bad())?;
    let v = v * mult;
    if !v.is_finite() || v <= 0.0 {
        return Err(format!("rate {s:?} must be greater than zero"));
    }
    Ok(if bits { Rate::Bps(v) } else { Rate::Pps(v) })
}

pub fn parse_secs(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !v.is_finite() || v <= 0.0 || v > 1e7 {
        return Err(format!(
            "duration {s:?} must be a positive number of seconds"
        ));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_as_pps_or_bps() {
        assert_eq!(parse_rate("10000"), Ok(Rate::Pps(10000.0)));
        assert_eq!(parse_rate("1.5M"), Ok(Rate::Pps(1.5e6)));
        assert_eq!(parse_rate("2kpps"), Ok(Rate::Pps(2000.0)));
        assert_eq!(parse_rate("100Mbps"), Ok(Rate::Bps(100e6)));
        assert_eq!(parse_rate("1Gbps"), Ok(Rate::Bps(1e9)));
        assert_eq!(parse_rate("512kbps"), Ok(Rate::Bps(512e3)));
        assert_eq!(parse_rate("9600bps"), Ok(Rate::Bps(9600.0)));
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("-5").is_err());
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("10Xbps").is_err());
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("64"), Ok(SizeSpec::Fixed(64)));
        assert_eq!(parse_size("64-1500"), Ok(SizeSpec::Range(64, 1500)));
        assert_eq!(parse_size("IMIX"), Ok(SizeSpec::Imix));
        assert_eq!(parse_size("100-100"), Ok(SizeSpec::Fixed(100)));
        assert!(parse_size("59").is_err());
        assert!(parse_size("1500-64").is_err());
        assert!(parse_size("9000").is_err());
    }

    #[test]
    fn ranges_parse() {
        let r = parse_ip_range("172.16.0.1-172.16.0.9").unwrap();
        assert_eq!(r.lo, IpAddr::from(Ipv4Addr::new(172, 16, 0, 1)));
        assert_eq!(r.hi, IpAddr::from(Ipv4Addr::new(172, 16, 0, 9)));
        assert!(parse_ip_range("172.16.0.9-172.16.0.1").is_err());
        let r = parse_ip_range("2001:db8:1::2-2001:db8:1::1:0").unwrap();
        assert_eq!(r.lo, "2001:db8:1::2".parse::<IpAddr>().unwrap());
        assert_eq!(r.hi, "2001:db8:1::1:0".parse::<IpAddr>().unwrap());
        assert!(parse_ip_range("2001:db8::9-2001:db8::1").is_err());
        let mixed = parse_ip_range("172.16.0.1-2001:db8::1").unwrap_err();
        assert!(mixed.contains("mixes IPv4 and IPv6"), "{mixed}");
        assert!(parse_ip_range("2001:db8::g").is_err());
        assert_eq!(parse_port_range("80"), Ok(Range::one(80)));
        assert_eq!(
            parse_port_range("1000-2000"),
            Ok(Range { lo: 1000, hi: 2000 })
        );
        assert!(parse_port_range("70000").is_err());
        let m = parse_mac_range("02:00:00:00:00:01-02:00:00:00:01:00").unwrap();
        assert_eq!(mac_to_u64(m.hi) - mac_to_u64(m.lo), 255);
        assert!(parse_mac("02:00:00:00:00").is_err());
        assert!(parse_mac("02:00:00:00:00:zz").is_err());
        assert_eq!(u64_to_mac(mac_to_u64(m.hi)), m.hi);
    }

    #[test]
    fn the_family_follows_the_addresses_given() {
        let one = |s: &str| Some(parse_ip_range(s).unwrap());
        let v4 = |a: Ipv4Addr| Range::one(IpAddr::from(a));
        let v6 = |a: Ipv6Addr| Range::one(IpAddr::from(a));
        assert_eq!(
            ip_pair(None, None),
            Ok((v4(DEFAULT_V4.0), v4(DEFAULT_V4.1)))
        );
        assert_eq!(
            ip_pair(None, one("2001:db8:5::3")),
            Ok((v6(DEFAULT_V6.0), one("2001:db8:5::3").unwrap()))
        );
        assert_eq!(
            ip_pair(one("2001:db8:5::2-2001:db8:5::9"), None),
            Ok((
                one("2001:db8:5::2-2001:db8:5::9").unwrap(),
                v6(DEFAULT_V6.1)
            ))
        );
        assert_eq!(
            ip_pair(one("172.16.0.5"), None),
            Ok((one("172.16.0.5").unwrap(), v4(DEFAULT_V4.1)))
        );
        let err = ip_pair(one("172.16.0.5"), one("2001:db8::2")).unwrap_err();
        assert!(err.contains("different families"), "{err}");
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
