//! ICMPv6 (RFC 4443) and Neighbor Discovery (RFC 4861): type, code and the checksum
//! over the IPv6 pseudo-header; echo and the four errors with the packet they quote
//! ([`Repr`]); Router and Neighbor Solicitation and Advertisement with their options
//! ([`NdpRepr`], [`NdpOptions`]).
//!
//! The message is the whole buffer: pass the IPv6 payload (`Ipv6Packet::payload`),
//! and the IPv6 source and destination for the checksum.

use std::net::Ipv6Addr;

use crate::checksum::checksum;
use crate::ipv6::{is_link_local, is_solicited_node, pseudo_header, NEXT_HEADER_ICMPV6};
use crate::{be32, put16, put32, Error, Mac, Result};

/// Type, code, checksum and the 4 bytes every message has behind them.
pub const HEADER_LEN: usize = 8;

pub const DEST_UNREACHABLE: u8 = 1;
pub const PACKET_TOO_BIG: u8 = 2;
pub const TIME_EXCEEDED: u8 = 3;
pub const PARAMETER_PROBLEM: u8 = 4;
pub const ECHO_REQUEST: u8 = 128;
pub const ECHO_REPLY: u8 = 129;
pub const ROUTER_SOLICIT: u8 = 133;
pub const ROUTER_ADVERT: u8 = 134;
pub const NEIGHBOR_SOLICIT: u8 = 135;
pub const NEIGHBOR_ADVERT: u8 = 136;

/// The fixed parts of the NDP messages, options excluded.
pub const ROUTER_SOLICIT_LEN: usize = 8;
pub const ROUTER_ADVERT_LEN: usize = 16;
/// Neighbor Solicitation and Advertisement (RFC 4861 7.1.1: "ICMP length ... is 24
/// or more octets").
pub const NEIGHBOR_LEN: usize = 24;

pub const OPT_SOURCE_LLADDR: u8 = 1;
pub const OPT_TARGET_LLADDR: u8 = 2;
pub const OPT_PREFIX_INFO: u8 = 3;
pub const OPT_MTU: u8 = 5;

/// Router Advertisement flags: Managed and Other configuration.
pub const RA_MANAGED: u8 = 0x80;
pub const RA_OTHER: u8 = 0x40;

/// The hop limit every NDP message is sent with and must arrive with (RFC 4861 6.1,
/// 7.1): one that was forwarded has less.
pub const NDP_HOP_LIMIT: u8 = 255;

/// Whether an NDP message's IPv6 hop limit is the 255 it must be (the caller checks
/// it: the message's own view does not see the IPv6 header).
#[inline]
pub fn ndp_hop_limit_ok(hop_limit: u8) -> bool {
    hop_limit == NDP_HOP_LIMIT
}

/// Whether messages of type `t` are errors (types below 128, RFC 4443 2.1).
#[inline]
pub fn is_error(t: u8) -> bool {
    t < 128
}

/// The checksum of an ICMPv6 `msg` from `src` to `dst`: 0 when its checksum field is
/// right, the field's value when the field is 0.
#[inline]
pub fn message_checksum(src: &Ipv6Addr, dst: &Ipv6Addr, msg: &[u8]) -> u16 {
    checksum(
        msg,
        pseudo_header(src, dst, msg.len() as u32, NEXT_HEADER_ICMPV6),
    )
}

header! {
    /// A view of an ICMPv6 message, at least its 8-byte header long; the message is
    /// the whole buffer.
    Packet, min: HEADER_LEN;
    /// Offsets in an ICMPv6 message.
    mod field {
        TYPE = 0 => msg_type: u8, set_msg_type;
        CODE = 1 => code: u8, set_code;
        CHECKSUM = 2 => checksum: u16, set_checksum;
        ECHO_IDENT = 4 => echo_ident: u16;
        ECHO_SEQ = 6 => echo_seq: u16;
        /// Packet Too Big: the next hop's MTU.
        MTU = 4 => mtu: u32;
        /// Parameter Problem: where in the quoted packet the problem is.
        POINTER = 4 => pointer: u32;
        /// An error's quoted packet, an echo's data, a Router Solicitation's options.
        DATA = 8;
    }
}

header! {
    /// A Neighbor Solicitation or Advertisement (RFC 4861 4.3, 4.4), at least 24
    /// bytes long.
    NeighborPacket, min: NEIGHBOR_LEN;
    /// Offsets in a Neighbor Solicitation or Advertisement.
    mod neighbor {
        /// Advertisement only: R, S and O ([`NaFlags`]).
        FLAGS = 4 => flags: u8;
        TARGET = 8 => target: Ipv6Addr;
        OPTIONS = 24;
    }
}

header! {
    /// The fixed part of a Router Advertisement (RFC 4861 4.2), at least 16 bytes.
    RouterAdvertPacket, min: ROUTER_ADVERT_LEN;
    /// Offsets in a Router Advertisement.
    mod router_advert {
        CUR_HOP_LIMIT = 4 => cur_hop_limit: u8;
        /// [`RA_MANAGED`], [`RA_OTHER`] and the rest of the byte.
        FLAGS = 5 => flags: u8;
        /// Seconds; 0: not a default router.
        ROUTER_LIFETIME = 6 => router_lifetime: u16;
        /// Milliseconds.
        REACHABLE_TIME = 8 => reachable_time: u32;
        /// Milliseconds.
        RETRANS_TIMER = 12 => retrans_timer: u32;
        OPTIONS = 16;
    }
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// What follows the 8-byte header.
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[field::DATA..]
    }
    /// The whole message.
    #[inline]
    pub fn message(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    /// Whether the checksum over the pseudo-header (`src`, `dst`) and the message is
    /// right.
    pub fn verify_checksum(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        message_checksum(src, dst, self.buffer.as_ref()) == 0
    }
    /// The options of an NDP message, behind its fixed part: `Unsupported` for other
    /// types, `Truncated` when the message is shorter than its fixed part.
    pub fn ndp_options(&self) -> Result<NdpOptions<'_>> {
        let start = match self.msg_type() {
            ROUTER_SOLICIT => ROUTER_SOLICIT_LEN,
            ROUTER_ADVERT => ROUTER_ADVERT_LEN,
            NEIGHBOR_SOLICIT | NEIGHBOR_ADVERT => NEIGHBOR_LEN,
            _ => return Err(Error::Unsupported),
        };
        let b = self.buffer.as_ref();
        b.get(start..).map(NdpOptions::new).ok_or(Error::Truncated)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::DATA..]
    }
    /// Computes the checksum over the pseudo-header and the whole message.
    pub fn fill_checksum(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        self.set_checksum(0);
        let c = message_checksum(src, dst, self.buffer.as_ref());
        self.set_checksum(c);
    }
}

/// The echo and error messages (RFC 4443), borrowing their data or quote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Repr<'a> {
    EchoRequest {
        ident: u16,
        seq: u16,
        data: &'a [u8],
    },
    EchoReply {
        ident: u16,
        seq: u16,
        data: &'a [u8],
    },
    DestUnreachable {
        code: u8,
        quote: &'a [u8],
    },
    PacketTooBig {
        mtu: u32,
        quote: &'a [u8],
    },
    TimeExceeded {
        code: u8,
        quote: &'a [u8],
    },
    ParamProblem {
        code: u8,
        pointer: u32,
        quote: &'a [u8],
    },
}

impl<'a> Repr<'a> {
    /// What the message from `src` to `dst` says: `Malformed` when the checksum does
    /// not verify or an echo has a code, `Unsupported` for other types (NDP: see
    /// [`NdpRepr`]).
    pub fn parse<T: AsRef<[u8]>>(
        src: &Ipv6Addr,
        dst: &Ipv6Addr,
        p: &'a Packet<T>,
    ) -> Result<Repr<'a>> {
        if !p.verify_checksum(src, dst) {
            return Err(Error::Malformed);
        }
        let data = p.data();
        Ok(match (p.msg_type(), p.code()) {
            (ECHO_REQUEST, 0) => Repr::EchoRequest {
                ident: p.echo_ident(),
                seq: p.echo_seq(),
                data,
            },
            (ECHO_REPLY, 0) => Repr::EchoReply {
                ident: p.echo_ident(),
                seq: p.echo_seq(),
                data,
            },
            (ECHO_REQUEST | ECHO_REPLY, _) => return Err(Error::Malformed),
            (DEST_UNREACHABLE, code) => Repr::DestUnreachable { code, quote: data },
            // The code is 0, and ignored by the receiver (RFC 4443 3.2).
            (PACKET_TOO_BIG, _) => Repr::PacketTooBig {
                mtu: p.mtu(),
                quote: data,
            },
            (TIME_EXCEEDED, code) => Repr::TimeExceeded { code, quote: data },
            (PARAMETER_PROBLEM, code) => Repr::ParamProblem {
                code,
                pointer: p.pointer(),
                quote: data,
            },
            _ => return Err(Error::Unsupported),
        })
    }

    /// The message's length: the header and the data or quote.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.data().len()
    }

    fn data(&self) -> &'a [u8] {
        match *self {
            Repr::EchoRequest { data, .. } | Repr::EchoReply { data, .. } => data,
            Repr::DestUnreachable { quote, .. }
            | Repr::PacketTooBig { quote, .. }
            | Repr::TimeExceeded { quote, .. }
            | Repr::ParamProblem { quote, .. } => quote,
        }
    }

    /// Writes the message from `src` to `dst` over `msg[..buffer_len()]`, data and
    /// checksum included. The caller has checked that `msg` holds it (and cut an
    /// error's quote so the packet stays within the minimum MTU, RFC 4443 2.4 (c)).
    pub fn emit(&self, src: &Ipv6Addr, dst: &Ipv6Addr, msg: &mut [u8]) {
        let (t, code, rest) = match *self {
            Repr::EchoRequest { ident, seq, .. } => {
                (ECHO_REQUEST, 0, u32::from(ident) << 16 | u32::from(seq))
            }
            Repr::EchoReply { ident, seq, .. } => {
                (ECHO_REPLY, 0, u32::from(ident) << 16 | u32::from(seq))
            }
            Repr::DestUnreachable { code, .. } => (DEST_UNREACHABLE, code, 0),
            Repr::PacketTooBig { mtu, .. } => (PACKET_TOO_BIG, 0, mtu),
            Repr::TimeExceeded { code, .. } => (TIME_EXCEEDED, code, 0),
            Repr::ParamProblem { code, pointer, .. } => (PARAMETER_PROBLEM, code, pointer),
        };
        let msg = &mut msg[..self.buffer_len()];
        msg[field::TYPE] = t;
        msg[field::CODE] = code;
        put32(msg, field::ECHO_IDENT, rest);
        msg[field::DATA..].copy_from_slice(self.data());
        Packet { buffer: msg }.fill_checksum(src, dst);
    }
}

/// A Neighbor Advertisement's flags (RFC 4861 4.4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NaFlags {
    /// R: the sender is a router.
    pub router: bool,
    /// S: an answer to a solicitation.
    pub solicited: bool,
    /// O: override an existing cache entry.
    pub override_: bool,
}

impl NaFlags {
    const ROUTER: u8 = 0x80;
    const SOLICITED: u8 = 0x40;
    const OVERRIDE: u8 = 0x20;

    pub fn from_byte(b: u8) -> NaFlags {
        NaFlags {
            router: b & Self::ROUTER != 0,
            solicited: b & Self::SOLICITED != 0,
            override_: b & Self::OVERRIDE != 0,
        }
    }

    pub fn to_byte(self) -> u8 {
        (if self.router { Self::ROUTER } else { 0 })
            | (if self.solicited { Self::SOLICITED } else { 0 })
            | (if self.override_ { Self::OVERRIDE } else { 0 })
    }
}

/// A Prefix Information option (RFC 4861 4.6.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrefixInfo {
    pub prefix_len: u8,
    /// L and A, and the rest of the byte.
    pub flags: u8,
    /// Seconds; all ones: infinity.
    pub valid_lifetime: u32,
    pub preferred_lifetime: u32,
    pub prefix: Ipv6Addr,
}

/// One NDP option (RFC 4861 4.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NdpOption<'a> {
    SourceLladdr(Mac),
    TargetLladdr(Mac),
    PrefixInfo(PrefixInfo),
    Mtu(u32),
    /// A type this module does not read: the whole option, type and length included
    /// (to be skipped, RFC 4861 4.6).
    Other {
        kind: u8,
        option: &'a [u8],
    },
}

/// The options behind an NDP message's fixed part, each checked as it is read: a
/// length of 0 is `Malformed`, an option running past the end `Truncated`, and so is
/// a length the option's type does not have (Ethernet link-layer addresses and the MTU
/// are 8 bytes, prefix information 32). After an error the iterator ends.
#[derive(Clone, Copy, Debug)]
pub struct NdpOptions<'a> {
    rest: &'a [u8],
}

impl<'a> NdpOptions<'a> {
    pub fn new(options: &'a [u8]) -> NdpOptions<'a> {
        NdpOptions { rest: options }
    }

    fn read(&mut self) -> Result<NdpOption<'a>> {
        let b = self.rest;
        if b.len() < 2 {
            return Err(Error::Truncated);
        }
        let len = usize::from(b[1]) * 8;
        if len == 0 {
            return Err(Error::Malformed);
        }
        let opt = b.get(..len).ok_or(Error::Truncated)?;
        self.rest = &b[len..];
        let want = |n: usize| {
            if len == n {
                Ok(())
            } else {
                Err(Error::Malformed)
            }
        };
        Ok(match opt[0] {
            OPT_SOURCE_LLADDR => {
                want(8)?;
                NdpOption::SourceLladdr(crate::mac(opt, 2))
            }
            OPT_TARGET_LLADDR => {
                want(8)?;
                NdpOption::TargetLladdr(crate::mac(opt, 2))
            }
            OPT_MTU => {
                want(8)?;
                NdpOption::Mtu(be32(opt, 4))
            }
            OPT_PREFIX_INFO => {
                want(32)?;
                NdpOption::PrefixInfo(PrefixInfo {
                    prefix_len: opt[2],
                    flags: opt[3],
                    valid_lifetime: be32(opt, 4),
                    preferred_lifetime: be32(opt, 8),
                    prefix: crate::addr6(opt, 16),
                })
            }
            kind => NdpOption::Other { kind, option: opt },
        })
    }
}

impl<'a> Iterator for NdpOptions<'a> {
    type Item = Result<NdpOption<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let r = self.read();
        if r.is_err() {
            self.rest = &[];
        }
        Some(r)
    }
}

/// The link-layer address and MTU options an NDP `Repr` carries (the last of each
/// kind wins), all options checked.
#[derive(Default)]
struct Found {
    source: Option<Mac>,
    target: Option<Mac>,
    mtu: Option<u32>,
}

fn scan(options: NdpOptions<'_>) -> Result<Found> {
    let mut f = Found::default();
    for o in options {
        match o? {
            NdpOption::SourceLladdr(m) => f.source = Some(m),
            NdpOption::TargetLladdr(m) => f.target = Some(m),
            NdpOption::Mtu(m) => f.mtu = Some(m),
            NdpOption::PrefixInfo(_) | NdpOption::Other { .. } => {}
        }
    }
    Ok(f)
}

/// What a Router Solicitation, Router Advertisement, Neighbor Solicitation or Neighbor
/// Advertisement says, with the options a switch answers from. A Router
/// Advertisement's prefixes are read with [`Packet::ndp_options`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NdpRepr {
    RouterSolicit {
        source_lladdr: Option<Mac>,
    },
    RouterAdvert {
        cur_hop_limit: u8,
        /// [`RA_MANAGED`], [`RA_OTHER`].
        flags: u8,
        router_lifetime: u16,
        reachable_time: u32,
        retrans_timer: u32,
        source_lladdr: Option<Mac>,
        mtu: Option<u32>,
    },
    NeighborSolicit {
        target: Ipv6Addr,
        source_lladdr: Option<Mac>,
    },
    NeighborAdvert {
        flags: NaFlags,
        target: Ipv6Addr,
        target_lladdr: Option<Mac>,
    },
}

impl NdpRepr {
    /// What the NDP message from `src` to `dst` says, validated as RFC 4861 6.1 and
    /// 7.1 ask of the message itself (the caller checks the hop limit,
    /// [`ndp_hop_limit_ok`]): the checksum verifies, the code is 0 (else `Malformed`);
    /// the message holds its fixed part (else `Truncated`); every option has a
    /// non-zero length and fits; a target is not multicast; a solicitation from the
    /// unspecified address goes to a solicited-node group and carries no source
    /// link-layer address; an advertisement to a multicast group is not solicited; a
    /// Router Advertisement comes from a link-local address. `Unsupported` for
    /// other types (redirects included).
    pub fn parse<T: AsRef<[u8]>>(src: &Ipv6Addr, dst: &Ipv6Addr, p: &Packet<T>) -> Result<NdpRepr> {
        if !matches!(
            p.msg_type(),
            ROUTER_SOLICIT | ROUTER_ADVERT | NEIGHBOR_SOLICIT | NEIGHBOR_ADVERT
        ) {
            return Err(Error::Unsupported);
        }
        if !p.verify_checksum(src, dst) || p.code() != 0 {
            return Err(Error::Malformed);
        }
        let found = scan(p.ndp_options()?)?;
        let b = p.message();
        let check = |ok: bool| if ok { Ok(()) } else { Err(Error::Malformed) };
        Ok(match p.msg_type() {
            ROUTER_SOLICIT => {
                check(!src.is_unspecified() || found.source.is_none())?;
                NdpRepr::RouterSolicit {
                    source_lladdr: found.source,
                }
            }
            ROUTER_ADVERT => {
                check(is_link_local(src))?;
                let ra = RouterAdvertPacket::new_checked(b)?;
                NdpRepr::RouterAdvert {
                    cur_hop_limit: ra.cur_hop_limit(),
                    flags: ra.flags(),
                    router_lifetime: ra.router_lifetime(),
                    reachable_time: ra.reachable_time(),
                    retrans_timer: ra.retrans_timer(),
                    source_lladdr: found.source,
                    mtu: found.mtu,
                }
            }
            NEIGHBOR_SOLICIT => {
                let n = NeighborPacket::new_checked(b)?;
                let target = n.target();
                check(!target.is_multicast())?;
                check(!src.is_unspecified() || (is_solicited_node(dst) && found.source.is_none()))?;
                NdpRepr::NeighborSolicit {
                    target,
                    source_lladdr: found.source,
                }
            }
            _ => {
                let n = NeighborPacket::new_checked(b)?;
                let target = n.target();
                let flags = NaFlags::from_byte(n.flags());
                check(!target.is_multicast())?;
                check(!(dst.is_multicast() && flags.solicited))?;
                NdpRepr::NeighborAdvert {
                    flags,
                    target,
                    target_lladdr: found.target,
                }
            }
        })
    }

    /// The message's length, options included.
    pub fn buffer_len(&self) -> usize {
        let opt = |o: bool| if o { 8 } else { 0 };
        match *self {
            NdpRepr::RouterSolicit { source_lladdr } => {
                ROUTER_SOLICIT_LEN + opt(source_lladdr.is_some())
            }
            NdpRepr::RouterAdvert {
                source_lladdr, mtu, ..
            } => ROUTER_ADVERT_LEN + opt(source_lladdr.is_some()) + opt(mtu.is_some()),
            NdpRepr::NeighborSolicit { source_lladdr, .. } => {
                NEIGHBOR_LEN + opt(source_lladdr.is_some())
            }
            NdpRepr::NeighborAdvert { target_lladdr, .. } => {
                NEIGHBOR_LEN + opt(target_lladdr.is_some())
            }
        }
    }

    /// Writes the message from `src` to `dst` over `msg[..buffer_len()]`, options
    /// (link-layer address first, then the MTU) and checksum included. The caller has
    /// checked that `msg` holds it.
    pub fn emit(&self, src: &Ipv6Addr, dst: &Ipv6Addr, msg: &mut [u8]) {
        let msg = &mut msg[..self.buffer_len()];
        msg.fill(0);
        let mut at = match *self {
            NdpRepr::RouterSolicit { .. } => {
                msg[field::TYPE] = ROUTER_SOLICIT;
                ROUTER_SOLICIT_LEN
            }
            NdpRepr::RouterAdvert {
                cur_hop_limit,
                flags,
                router_lifetime,
                reachable_time,
                retrans_timer,
                ..
            } => {
                msg[field::TYPE] = ROUTER_ADVERT;
                msg[router_advert::CUR_HOP_LIMIT] = cur_hop_limit;
                msg[router_advert::FLAGS] = flags;
                put16(msg, router_advert::ROUTER_LIFETIME, router_lifetime);
                put32(msg, router_advert::REACHABLE_TIME, reachable_time);
                put32(msg, router_advert::RETRANS_TIMER, retrans_timer);
                ROUTER_ADVERT_LEN
            }
            NdpRepr::NeighborSolicit { target, .. } => {
                msg[field::TYPE] = NEIGHBOR_SOLICIT;
                msg[neighbor::TARGET..neighbor::OPTIONS].copy_from_slice(&target.octets());
                NEIGHBOR_LEN
            }
            NdpRepr::NeighborAdvert { flags, target, .. } => {
                msg[field::TYPE] = NEIGHBOR_ADVERT;
                msg[neighbor::FLAGS] = flags.to_byte();
                msg[neighbor::TARGET..neighbor::OPTIONS].copy_from_slice(&target.octets());
                NEIGHBOR_LEN
            }
        };
        let (lladdr, mtu) = match *self {
            NdpRepr::RouterSolicit { source_lladdr }
            | NdpRepr::NeighborSolicit { source_lladdr, .. } => {
                (source_lladdr.map(|m| (OPT_SOURCE_LLADDR, m)), None)
            }
            NdpRepr::RouterAdvert {
                source_lladdr, mtu, ..
            } => (source_lladdr.map(|m| (OPT_SOURCE_LLADDR, m)), mtu),
            NdpRepr::NeighborAdvert { target_lladdr, .. } => {
                (target_lladdr.map(|m| (OPT_TARGET_LLADDR, m)), None)
            }
        };
        if let Some((kind, mac)) = lladdr {
            msg[at] = kind;
            msg[at + 1] = 1;
            msg[at + 2..at + 8].copy_from_slice(&mac);
            at += 8;
        }
        if let Some(mtu) = mtu {
            msg[at] = OPT_MTU;
            msg[at + 1] = 1;
            put32(msg, at + 4, mtu);
        }
        Packet { buffer: msg }.fill_checksum(src, dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipv6::tests::{hex, ECHO_REQUEST as ECHO_REQUEST_FRAME};
    use crate::ipv6::{Ipv6Frame, Ipv6Repr};

    // Frames built by scapy 2.x (`raw(Ether()/IPv6()/...)`), pasted as hex.
    const A: Mac = [2, 0, 0, 0, 0, 1];
    const B: Mac = [2, 0, 0, 0, 0, 2];

    /// `IPv6(src="fe80::1", dst="ff02::1:ff00:2", hlim=255) / ICMPv6ND_NS(tgt="fe80::2")
    /// / ICMPv6NDOptSrcLLAddr(lladdr="02:00:00:00:00:01")`, to 33:33:ff:00:00:02.
    const NS: &str = "3333ff00000202000000000186dd6000000000203afffe80000000000000000000000000\
        0001ff0200000000000000000001ff00000287007a9700000000fe800000000000000000000000000002\
        0101020000000001";
    /// `IPv6(src="fe80::2", dst="fe80::1", hlim=255) / ICMPv6ND_NA(tgt="fe80::2", R=0,
    /// S=1, O=1) / ICMPv6NDOptDstLLAddr(lladdr="02:00:00:00:00:02")`.
    const NA: &str = "02000000000102000000000286dd6000000000203afffe80000000000000000000000000\
        0002fe8000000000000000000000000000018800181a60000000fe800000000000000000000000000002\
        0201020000000002";
    /// An unsolicited NA to ff02::1: `ICMPv6ND_NA(tgt="2001:db8::2", R=1, S=0, O=1)`.
    const NA_UNSOLICITED: &str = "33330000000102000000000286dd6000000000203afffe80000000000000\
        0000000000000002ff0200000000000000000000000000018800a85fa000000020010db800000000\
        00000000000000020201020000000002";
    /// `IPv6(src="fe80::1", dst="ff02::2", hlim=255) / ICMPv6ND_RS() /
    /// ICMPv6NDOptSrcLLAddr(lladdr="02:00:00:00:00:01")`.
    const RS: &str = "33330000000202000000000186dd6000000000103afffe80000000000000000000000000\
        0001ff02000000000000000000000000000285007a2c000000000101020000000001";
    /// `IPv6(src="fe80::2", dst="ff02::1", hlim=255) / ICMPv6ND_RA(chlim=64, M=1, O=0,
    /// routerlifetime=1800, reachabletime=30000, retranstimer=1000) /
    /// ICMPv6NDOptSrcLLAddr(lladdr="02:00:00:00:00:02") / ICMPv6NDOptMTU(mtu=1450)`.
    const RA: &str = "33330000000102000000000286dd6000000000203afffe80000000000000000000000000\
        0002ff0200000000000000000000000000018600adc74088070800007530000003e80101020000000002\
        05010000000005aa";
    /// The same RA with `/ ICMPv6NDOptPrefixInfo(prefix="2001:db8::", prefixlen=64)`.
    const RA_PREFIX: &str = "33330000000102000000000286dd6000000000403afffe800000000000000000\
        000000000002ff02000000000000000000000000000186003c2a4088070800007530000003e801010200\
        0000000205010000000005aa030440c0ffffffffffffffff0000000020010db8000000000000000000000000";
    /// `IPv6(src="2001:db8::2", dst="2001:db8::1", hlim=64) / ICMPv6EchoReply(id=0x1c46,
    /// seq=1, data=b"ping6")`.
    const ECHO_REPLY_FRAME: &str = "02000000000102000000000286dd60000000000d3a4020010db8000000\
        00000000000000000220010db80000000000000000000000018100f22a1c46000170696e6736";
    /// `IPv6(src="2001:db8::fe", dst="2001:db8::1", hlim=64) / ICMPv6PacketTooBig(mtu=1280)
    /// / IPv6(src="2001:db8::1", dst="2001:db8:1::9", hlim=63) / UDP(sport=4000, dport=53)
    /// / Raw(b"x" * 16)`.
    const PTB: &str =
        "02000000000102000000000286dd6000000000483a4020010db80000000000000000000000fe\
        20010db800000000000000000000000102002ade00000500600000000018113f20010db8000000000000\
        00000000000120010db80001000000000000000000090fa000350018d0a87878787878787878787878787878\
        7878";
    /// The same quote in `ICMPv6TimeExceeded(code=0)`, `ICMPv6DestUnreach(code=4)` and
    /// `ICMPv6ParamProblem(code=1, ptr=40)` (hop limit 64, scapy's default).
    const TE: &str = "02000000000102000000000286dd6000000000483a4020010db80000000000000000000000fe\
        20010db800000000000000000000000103002ede00000000600000000018113f20010db8000000000000\
        00000000000120010db80001000000000000000000090fa000350018d0a87878787878787878787878787878\
        7878";
    const DU: &str = "02000000000102000000000286dd6000000000483a4020010db80000000000000000000000fe\
        20010db8000000000000000000000001010430da00000000600000000018113f20010db8000000000000\
        00000000000120010db80001000000000000000000090fa000350018d0a87878787878787878787878787878\
        7878";
    const PP: &str = "02000000000102000000000286dd6000000000483a4020010db80000000000000000000000fe\
        20010db800000000000000000000000104012db500000028600000000018113f20010db8000000000000\
        00000000000120010db80001000000000000000000090fa000350018d0a87878787878787878787878787878\
        7878";

    fn frame(s: &str) -> Vec<u8> {
        hex(&s.replace(' ', ""))
    }

    fn a(s: &str) -> Ipv6Addr {
        s.parse().expect("address")
    }

    /// The IPv6 header and the NDP message of a frame, with the checksum verified.
    fn ndp(f: &[u8]) -> (Ipv6Repr, NdpRepr) {
        let v = Ipv6Frame::new(f).expect("IPv6");
        assert_eq!(v.next_header(), NEXT_HEADER_ICMPV6);
        let ip = Ipv6Repr::parse(&v.packet());
        let p = Packet::new_checked(v.payload()).expect("ICMPv6");
        assert!(p.verify_checksum(&ip.src, &ip.dst));
        (ip, NdpRepr::parse(&ip.src, &ip.dst, &p).expect("NDP"))
    }

    /// `r` emitted from `ip` with the frame's MACs is the frame, byte for byte.
    fn emits_the_same(f: &[u8], ip: &Ipv6Repr, emit: impl FnOnce(&mut [u8]), len: usize) {
        assert_eq!(ip.payload_len, len);
        let mut out = vec![0u8; f.len()];
        let room = ip.emit_frame(crate::mac(f, 6), crate::mac(f, 0), &mut out);
        emit(room);
        assert_eq!(out, f);
    }

    #[test]
    fn neighbor_solicitation_both_ways() {
        let f = frame(NS);
        let (ip, r) = ndp(&f);
        assert!(ndp_hop_limit_ok(ip.hop_limit));
        assert_eq!(
            r,
            NdpRepr::NeighborSolicit {
                target: a("fe80::2"),
                source_lladdr: Some(A)
            }
        );
        assert_eq!(ip.dst, crate::ipv6::solicited_node(&a("fe80::2")));
        assert_eq!(crate::mac(&f, 0), crate::ipv6::multicast_mac(&ip.dst));
        let v = Ipv6Frame::new(&f).expect("IPv6");
        let n = NeighborPacket::new_checked(v.payload()).expect("24 bytes");
        assert_eq!(n.target(), a("fe80::2"));
        emits_the_same(&f, &ip, |m| r.emit(&ip.src, &ip.dst, m), r.buffer_len());
    }

    #[test]
    fn neighbor_advertisements_both_ways() {
        let f = frame(NA);
        let (ip, r) = ndp(&f);
        let flags = NaFlags {
            router: false,
            solicited: true,
            override_: true,
        };
        assert_eq!(
            r,
            NdpRepr::NeighborAdvert {
                flags,
                target: a("fe80::2"),
                target_lladdr: Some(B)
            }
        );
        assert_eq!(flags.to_byte(), 0x60);
        emits_the_same(&f, &ip, |m| r.emit(&ip.src, &ip.dst, m), r.buffer_len());

        let f = frame(NA_UNSOLICITED);
        let (ip, r) = ndp(&f);
        let flags = NaFlags {
            router: true,
            solicited: false,
            override_: true,
        };
        assert_eq!(
            r,
            NdpRepr::NeighborAdvert {
                flags,
                target: a("2001:db8::2"),
                target_lladdr: Some(B)
            }
        );
        emits_the_same(&f, &ip, |m| r.emit(&ip.src, &ip.dst, m), r.buffer_len());
    }

    #[test]
    fn router_solicitation_and_advertisement_both_ways() {
        let f = frame(RS);
        let (ip, r) = ndp(&f);
        assert_eq!(
            r,
            NdpRepr::RouterSolicit {
                source_lladdr: Some(A)
            }
        );
        emits_the_same(&f, &ip, |m| r.emit(&ip.src, &ip.dst, m), r.buffer_len());

        let f = frame(RA);
        let (ip, r) = ndp(&f);
        let want = NdpRepr::RouterAdvert {
            cur_hop_limit: 64,
            flags: RA_MANAGED | 0x08, // and scapy's default preference, medium (RFC 4191)
            router_lifetime: 1800,
            reachable_time: 30000,
            retrans_timer: 1000,
            source_lladdr: Some(B),
            mtu: Some(1450),
        };
        assert_eq!(r, want);
        emits_the_same(&f, &ip, |m| r.emit(&ip.src, &ip.dst, m), r.buffer_len());

        // With a prefix: the same Repr, and the prefix read from the options.
        let f = frame(RA_PREFIX);
        let (_, r) = ndp(&f);
        assert_eq!(r, want);
        let v = Ipv6Frame::new(&f).expect("IPv6");
        let p = Packet::new_checked(v.payload()).expect("ICMPv6");
        let opts: Vec<_> = p.ndp_options().expect("RA").collect();
        assert_eq!(
            opts,
            [
                Ok(NdpOption::SourceLladdr(B)),
                Ok(NdpOption::Mtu(1450)),
                Ok(NdpOption::PrefixInfo(PrefixInfo {
                    prefix_len: 64,
                    flags: 0xc0,
                    valid_lifetime: u32::MAX,
                    preferred_lifetime: u32::MAX,
                    prefix: a("2001:db8::"),
                }))
            ]
        );
        let ra = RouterAdvertPacket::new_checked(v.payload()).expect("16 bytes");
        assert_eq!((ra.cur_hop_limit(), ra.router_lifetime()), (64, 1800));
    }

    /// The ICMPv6 message of a frame, and its IPv6 header.
    fn icmp(f: &[u8]) -> (Ipv6Repr, &[u8]) {
        let v = Ipv6Frame::new(f).expect("IPv6");
        (Ipv6Repr::parse(&v.packet()), v.payload())
    }

    #[test]
    fn echo_both_ways() {
        let f = frame(ECHO_REQUEST_FRAME);
        let (ip, m) = icmp(&f);
        let p = Packet::new_checked(m).expect("ICMPv6");
        let r = Repr::parse(&ip.src, &ip.dst, &p).expect("echo");
        assert_eq!(
            r,
            Repr::EchoRequest {
                ident: 0x1c46,
                seq: 1,
                data: b"ping6"
            }
        );
        let mut out = vec![0u8; r.buffer_len()];
        r.emit(&ip.src, &ip.dst, &mut out);
        assert_eq!(out, m);
        assert_eq!(
            NdpRepr::parse(&ip.src, &ip.dst, &p),
            Err(Error::Unsupported)
        );

        let f = frame(ECHO_REPLY_FRAME);
        let (ip, m) = icmp(&f);
        let p = Packet::new_checked(m).expect("ICMPv6");
        let r = Repr::parse(&ip.src, &ip.dst, &p).expect("echo");
        assert_eq!(
            r,
            Repr::EchoReply {
                ident: 0x1c46,
                seq: 1,
                data: b"ping6"
            }
        );
        emits_the_same(&f, &ip, |m| r.emit(&ip.src, &ip.dst, m), r.buffer_len());
    }

    #[test]
    fn errors_quote_the_packet_both_ways() {
        for (s, t) in [
            (PTB, PACKET_TOO_BIG),
            (TE, TIME_EXCEEDED),
            (DU, DEST_UNREACHABLE),
            (PP, PARAMETER_PROBLEM),
        ] {
            let f = frame(s);
            let (ip, m) = icmp(&f);
            let p = Packet::new_checked(m).expect("ICMPv6");
            assert!(is_error(p.msg_type()) && p.msg_type() == t);
            let r = Repr::parse(&ip.src, &ip.dst, &p).expect("error");
            let quote = &f[14 + 40 + 8..];
            assert_eq!(quote.len(), 64);
            let want = match t {
                PACKET_TOO_BIG => Repr::PacketTooBig { mtu: 1280, quote },
                TIME_EXCEEDED => Repr::TimeExceeded { code: 0, quote },
                DEST_UNREACHABLE => Repr::DestUnreachable { code: 4, quote },
                _ => Repr::ParamProblem {
                    code: 1,
                    pointer: 40,
                    quote,
                },
            };
            assert_eq!(r, want);
            // The quote is an IPv6 packet again.
            let q = crate::ipv6::Ipv6Packet::new_checked(quote).expect("quoted IPv6");
            assert_eq!((q.dst(), q.next_header()), (a("2001:db8:1::9"), 17));
            emits_the_same(&f, &ip, |m| r.emit(&ip.src, &ip.dst, m), r.buffer_len());
        }
    }

    /// The NS message with `edit` applied and its checksum recomputed.
    fn edited_ns(edit: impl FnOnce(&mut Vec<u8>)) -> (Ipv6Addr, Ipv6Addr, Vec<u8>) {
        let f = frame(NS);
        let (ip, m) = icmp(&f);
        let mut m = m.to_vec();
        edit(&mut m);
        Packet::new_checked(&mut m[..])
            .expect("header")
            .fill_checksum(&ip.src, &ip.dst);
        (ip.src, ip.dst, m)
    }

    fn parse_ns(src: Ipv6Addr, dst: Ipv6Addr, m: &[u8]) -> Result<NdpRepr> {
        NdpRepr::parse(&src, &dst, &Packet::new_checked(m)?)
    }

    #[test]
    fn refusals() {
        let (src, dst, m) = edited_ns(|_| {});
        assert!(parse_ns(src, dst, &m).is_ok());
        let mut bad = m.clone();
        bad[2] ^= 0x01;
        assert_eq!(parse_ns(src, dst, &bad), Err(Error::Malformed), "checksum");
        assert_eq!(
            parse_ns(src, a("ff02::1:ff00:3"), &m),
            Err(Error::Malformed),
            "checksum over another pseudo-header"
        );
        let (src, dst, m) = edited_ns(|m| m[25] = 0);
        assert_eq!(
            parse_ns(src, dst, &m),
            Err(Error::Malformed),
            "option length 0"
        );
        let (src, dst, m) = edited_ns(|m| m[25] = 2);
        assert_eq!(
            parse_ns(src, dst, &m),
            Err(Error::Truncated),
            "option past the end"
        );
        let (src, dst, m) = edited_ns(|m| m.truncate(31));
        assert_eq!(
            parse_ns(src, dst, &m),
            Err(Error::Truncated),
            "option cut short"
        );
        let (src, dst, m) = edited_ns(|m| m.truncate(20));
        assert_eq!(
            parse_ns(src, dst, &m),
            Err(Error::Truncated),
            "under 24 bytes"
        );
        let (src, dst, m) = edited_ns(|m| m[1] = 1);
        assert_eq!(parse_ns(src, dst, &m), Err(Error::Malformed), "code 1");
        let (src, dst, m) = edited_ns(|m| m[8] = 0xff);
        assert_eq!(
            parse_ns(src, dst, &m),
            Err(Error::Malformed),
            "multicast target"
        );
        // From the unspecified address (DAD): to the solicited-node group, no lladdr.
        let un = Ipv6Addr::UNSPECIFIED;
        let (_, dst, m) = edited_ns(|_| {});
        let mut m = m;
        Packet::new_checked(&mut m[..])
            .expect("h")
            .fill_checksum(&un, &dst);
        assert_eq!(
            parse_ns(un, dst, &m),
            Err(Error::Malformed),
            "DAD with lladdr"
        );
        let mut dad = m[..24].to_vec();
        Packet::new_checked(&mut dad[..])
            .expect("h")
            .fill_checksum(&un, &dst);
        assert_eq!(
            parse_ns(un, dst, &dad),
            Ok(NdpRepr::NeighborSolicit {
                target: a("fe80::2"),
                source_lladdr: None
            })
        );
        let to = a("fe80::2");
        Packet::new_checked(&mut dad[..])
            .expect("h")
            .fill_checksum(&un, &to);
        assert_eq!(parse_ns(un, to, &dad), Err(Error::Malformed), "DAD unicast");

        // A solicited advertisement to a multicast group.
        let f = frame(NA_UNSOLICITED);
        let (ip, m) = icmp(&f);
        let mut m = m.to_vec();
        m[4] |= 0x40;
        let mut p = Packet::new_checked(&mut m[..]).expect("h");
        p.fill_checksum(&ip.src, &ip.dst);
        assert_eq!(NdpRepr::parse(&ip.src, &ip.dst, &p), Err(Error::Malformed));
        // An RA from a global address.
        let f = frame(RA);
        let (ip, m) = icmp(&f);
        let mut m = m.to_vec();
        let g = a("2001:db8::fe");
        let mut p = Packet::new_checked(&mut m[..]).expect("h");
        p.fill_checksum(&g, &ip.dst);
        assert_eq!(NdpRepr::parse(&g, &ip.dst, &p), Err(Error::Malformed));
        // A wrong length for a known option type.
        let mut o = [OPT_MTU, 2, 0, 0, 0, 0, 5, 0xaa, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(NdpOptions::new(&o).next(), Some(Err(Error::Malformed)));
        o[1] = 1;
        let mut it = NdpOptions::new(&o[..9]);
        assert_eq!(it.next(), Some(Ok(NdpOption::Mtu(0x5aa))));
        assert_eq!(it.next(), Some(Err(Error::Truncated)), "one byte left");
        assert_eq!(it.next(), None, "ends after an error");
        // Echo with a code; too short for a header.
        let f = frame(ECHO_REQUEST_FRAME);
        let (ip, m) = icmp(&f);
        let mut m = m.to_vec();
        m[1] = 3;
        let mut p = Packet::new_checked(&mut m[..]).expect("h");
        p.fill_checksum(&ip.src, &ip.dst);
        assert_eq!(Repr::parse(&ip.src, &ip.dst, &p), Err(Error::Malformed));
        assert_eq!(Packet::new_checked(&m[..7]), Err(Error::Truncated));
    }
}
