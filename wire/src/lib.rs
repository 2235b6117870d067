//! What every vswitch crate needs to know about frames on the wire, in one place below
//! all of them (nat, vxlan, dns, switch and pktgen depend on it, it depends on nothing):
//! the Internet checksum with its incremental update, and typed views of the headers a
//! switch reads and writes.
//!
//! Each header is a module in the style of smoltcp's `wire`: one `header!` declares each
//! field once (name, offset, and for the fields read by name their type and accessors),
//! which gives the `field` module of named offsets and a `Packet<T: AsRef<[u8]>>` (or,
//! for a whole frame, a named view) that is checked for length once in `new_checked` and
//! then read by name without further bounds checks that can fail, with setters for
//! `T: AsMut<[u8]>`; a `Repr` holds what the header means with a `parse` and an `emit`
//! that are each other's mirror. Nothing allocates.
//!
//! - [`ethernet`]: the Ethernet II header ([`ethernet::Frame`], [`ethernet::Repr`]).
//! - [`vlan`]: one 802.1Q / 802.1ad tag behind the MACs ([`vlan::Tagged`],
//!   [`vlan::TagRepr`]), and pushing or popping it while copying a frame.
//! - [`arp`]: Ethernet/IPv4 ARP ([`arp::Packet`], [`arp::Repr`]), whole request and
//!   reply frames.
//! - [`ip`]: IPv4 ([`ip::Ipv4Packet`], [`ip::Ipv4Repr`], and [`ip::Ipv4Frame`], the
//!   checked view of an untagged Ethernet+IPv4 frame).
//! - [`ipv6`]: the fixed IPv6 header ([`ipv6::Ipv6Packet`], [`ipv6::Ipv6Repr`],
//!   [`ipv6::Ipv6Frame`]), the upper-layer pseudo-header, solicited-node and multicast
//!   MAC addresses.
//! - [`icmpv6`]: ICMPv6 (RFC 4443: echo and the errors, [`icmpv6::Repr`]) and Neighbor
//!   Discovery (RFC 4861: [`icmpv6::NdpRepr`], the options in [`icmpv6::NdpOptions`]).
//! - [`udp`], [`tcp`], [`icmp`]: the transport headers.
//!
//! The protocol crates keep their own views of the headers they own (vxlan's VXLAN
//! header, nat's translation tuples).

/// A view type over a buffer `T`: the struct, and a `new_checked` that refuses a
/// buffer shorter than `min` (`Truncated`) or one `check` refuses, so that no getter
/// indexes out of bounds afterwards.
macro_rules! view {
    ($(#[$doc:meta])* $name:ident, min: $min:expr, check: $check:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct $name<T: AsRef<[u8]>> {
            buffer: T,
        }

        impl<T: AsRef<[u8]>> $name<T> {
            #[inline]
            pub fn new_checked(buffer: T) -> crate::Result<Self> {
                let b = buffer.as_ref();
                if b.len() < $min {
                    return Err(crate::Error::Truncated);
                }
                let check: fn(&[u8]) -> crate::Result<()> = $check;
                check(b)?;
                Ok($name { buffer })
            }

            /// The buffer back.
            pub fn into_inner(self) -> T {
                self.buffer
            }
        }
    };
    ($(#[$doc:meta])* $name:ident, min: $min:expr) => {
        view!($(#[$doc])* $name, min: $min, check: |_| Ok(()));
    };
}

/// One header declared field by field, each field once: its name, offset, and (for the
/// fields read or written by name) its accessors and type. It generates the module of
/// named offsets, the view over a buffer (see [`view`]) and the accessors, which read
/// `u8`, `u16` and `u32` (big-endian), `Ipv4Addr` and `Mac` without bounds checks that
/// can fail (the view's constructor checked the length).
///
/// ```text
/// header! {
///     /// The view's doc.
///     Packet, min: HEADER_LEN, check: |b| ...;
///     /// The offsets module's doc.
///     mod field {
///         /// A field's doc (on its offset and its getter).
///         NAME = 4 => getter: u16, setter;  // read and written by name
///         NAME = 6 => getter: u16;          // read only
///         NAME = 8;                         // an offset only (read by hand, a payload's start)
///     }
/// }
/// ```
macro_rules! header {
    (@read u8, $b:expr, $at:expr) => { $b[$at] };
    (@read u16, $b:expr, $at:expr) => { crate::be16($b, $at) };
    (@read u32, $b:expr, $at:expr) => { crate::be32($b, $at) };
    (@read Ipv4Addr, $b:expr, $at:expr) => { crate::addr($b, $at) };
    (@read Mac, $b:expr, $at:expr) => { crate::mac($b, $at) };
    (@read Ipv6Addr, $b:expr, $at:expr) => { crate::addr6($b, $at) };
    (@write u8, $b:expr, $at:expr, $v:expr) => { $b[$at] = $v };
    (@write u16, $b:expr, $at:expr, $v:expr) => { crate::put16($b, $at, $v) };
    (@write Ipv4Addr, $b:expr, $at:expr, $v:expr) => { $b[$at..$at + 4].copy_from_slice(&$v.octets()) };
    (@write Mac, $b:expr, $at:expr, $v:expr) => { $b[$at..$at + 6].copy_from_slice(&$v) };
    (@write u32, $b:expr, $at:expr, $v:expr) => { crate::put32($b, $at, $v) };
    (@write Ipv6Addr, $b:expr, $at:expr, $v:expr) => { $b[$at..$at + 16].copy_from_slice(&$v.octets()) };
    // The accessors of one field: none for an offset alone.
    (@accessors [$($doc:tt)*] $at:expr) => {};
    (@accessors [$($doc:tt)*] $at:expr => $get:ident: $ty:tt $(, $set:ident)?) => {
        $($doc)*
        #[inline]
        pub fn $get(&self) -> $ty {
            header!(@read $ty, self.buffer.as_ref(), $at)
        }
        $(
            #[inline]
            pub fn $set(&mut self, v: $ty)
            where
                T: AsMut<[u8]>,
            {
                header!(@write $ty, self.buffer.as_mut(), $at, v)
            }
        )?
    };
    (
        $(#[$vdoc:meta])* $view:ident, min: $min:expr $(, check: $check:expr)?;
        $(#[$mdoc:meta])* mod $m:ident {
            $($(#[$fdoc:meta])* $f:ident = $at:expr $(=> $get:ident: $ty:tt $(, $set:ident)?)?;)*
        }
    ) => {
        $(#[$mdoc])*
        pub mod $m {
            $($(#[$fdoc])* pub const $f: usize = $at;)*
        }

        view!($(#[$vdoc])* $view, min: $min $(, check: $check)?);

        impl<T: AsRef<[u8]>> $view<T> {
            $(header!(@accessors [$(#[$fdoc])*] $m::$f $(=> $get: $ty $(, $set)?)?);)*
        }
    };
}

pub mod arp;
pub mod checksum;
pub mod ethernet;
#[doc(hidden)]
pub mod fuzzing;
pub mod icmp;
pub mod icmpv6;
pub mod ip;
pub mod ipv6;
pub mod tcp;
pub mod udp;
pub mod vlan;

pub use checksum::Delta;
pub use ethernet::{Mac, ETH_HLEN};

/// Why a view or a `Repr` refused the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// Shorter than the header (or than a length field says).
    Truncated,
    /// Fields that contradict each other or the protocol (a wrong TPID, a header length
    /// under the minimum, an ARP that is not Ethernet/IPv4).
    Malformed,
    /// Well formed, but of a kind the `Repr` does not describe.
    Unsupported,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Error::Truncated => "truncated",
            Error::Malformed => "malformed",
            Error::Unsupported => "unsupported",
        })
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

/// A length a header states (its own, or its packet's) checked against the least it may
/// be and the buffer it is in.
#[inline]
pub(crate) fn stated_len(len: usize, min: usize, buffer: usize) -> Result<()> {
    if len < min {
        Err(Error::Malformed)
    } else if len > buffer {
        Err(Error::Truncated)
    } else {
        Ok(())
    }
}

/// A big-endian 16-bit field at `at`; the caller's view has checked the bounds.
#[inline]
pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline]
pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline]
pub(crate) fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

#[inline]
pub(crate) fn addr6(b: &[u8], at: usize) -> std::net::Ipv6Addr {
    let mut a = [0; 16];
    a.copy_from_slice(&b[at..at + 16]);
    std::net::Ipv6Addr::from(a)
}

#[inline]
pub(crate) fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline]
pub(crate) fn addr(b: &[u8], at: usize) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

#[inline]
pub(crate) fn mac(b: &[u8], at: usize) -> Mac {
    let mut m = [0; 6];
    m.copy_from_slice(&b[at..at + 6]);
    m
}
