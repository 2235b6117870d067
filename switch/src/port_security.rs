//! Port security (OVN's `port_security`, Cilium's endpoint checks): an endpoint's port
//! may send only from the MAC and IPv4 address the control plane gave it, plus the
//! extra addresses allowed for it (OVN's allowed-address-pairs: a virtual IP, a second
//! MAC). What a protocol needs passes: ARP for its own address (and RFC 5227 probes
//! from 0.0.0.0), IPv6 from its MAC (sandboxes have IPv6 off; link-local and neighbour
//! discovery carry no IPv4 address to check). VLAN-tagged frames never pass: a
//! sandbox must not hop onto a trunk's other VLANs. Checked once per frame, before the
//! source is learned, so a spoofed MAC is never learned on the port (and the kernel's
//! fast path, which forwards only from a source installed on the port, follows).

use std::net::Ipv4Addr;

use crate::fdb::Mac;
use wire::ethernet::{ETHERTYPE_ARP, ETHERTYPE_IPV4};

/// Most addresses one port may use (its own and the allowed extras), per kind.
pub const MAX_ADDRESSES: usize = 8;

const ETHERTYPE_IPV6: u16 = 0x86dd;
const TAGS: [u16; 3] = [0x8100, 0x88a8, 0x9100];

/// What one port may send from. Fixed-size and `Copy`: read once per burst, no
/// allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortGuard {
    macs: [Mac; MAX_ADDRESSES],
    n_macs: usize,
    ips: [Ipv4Addr; MAX_ADDRESSES],
    n_ips: usize,
}

impl PortGuard {
    /// A guard for `macs` and `ips` (each deduplicated; None when either is empty or
    /// longer than [`MAX_ADDRESSES`]).
    pub fn new(macs: &[Mac], ips: &[Ipv4Addr]) -> Option<PortGuard> {
        if macs.is_empty()
            || ips.is_empty()
            || macs.len() > MAX_ADDRESSES
            || ips.len() > MAX_ADDRESSES
        {
            return None;
        }
        let mut g = PortGuard {
            macs: [[0; 6]; MAX_ADDRESSES],
            n_macs: 0,
            ips: [Ipv4Addr::UNSPECIFIED; MAX_ADDRESSES],
            n_ips: 0,
        };
        for m in macs {
            if !g.macs[..g.n_macs].contains(m) {
                g.macs[g.n_macs] = *m;
                g.n_macs += 1;
            }
        }
        for ip in ips {
            if !g.ips[..g.n_ips].contains(ip) {
                g.ips[g.n_ips] = *ip;
                g.n_ips += 1;
            }
        }
        Some(g)
    }

    /// The IPv4 addresses the port may send from.
    pub fn ips(&self) -> &[Ipv4Addr] {
        &self.ips[..self.n_ips]
    }

    fn mac_ok(&self, m: &[u8]) -> bool {
        self.macs[..self.n_macs].iter().any(|a| a[..] == *m)
    }

    fn ip_ok(&self, ip: &[u8]) -> bool {
        self.ips[..self.n_ips].iter().any(|a| a.octets()[..] == *ip)
    }

    /// Whether the port may send `frame` (an Ethernet frame; a runt is not allowed).
    pub fn allows(&self, frame: &[u8]) -> bool {
        if frame.len() < 14 || !self.mac_ok(&frame[6..12]) {
            return false;
        }
        let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
        match ethertype {
            ETHERTYPE_IPV4 => frame.len() >= 34 && self.ip_ok(&frame[26..30]),
            ETHERTYPE_ARP => {
                // Ethernet/IPv4 ARP: sender MAC at 22, sender IP at 28.
                frame.len() >= 42
                    && self.mac_ok(&frame[22..28])
                    && (self.ip_ok(&frame[28..32]) || frame[28..32] == [0, 0, 0, 0])
            }
            ETHERTYPE_IPV6 => true,
            t if TAGS.contains(&t) => false,
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: Mac = [2, 0x42, 172, 20, 0, 2];
    const IP: Ipv4Addr = Ipv4Addr::new(172, 20, 0, 2);

    fn eth(src: Mac, ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend(src);
        f.extend(ethertype.to_be_bytes());
        f.extend(payload);
        f.resize(f.len().max(60), 0);
        f
    }

    fn ipv4(src: Mac, ip: Ipv4Addr) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 20, 0, 0, 0x40, 0, 64, 17, 0, 0];
        p.extend(ip.octets());
        p.extend([172, 20, 0, 1]);
        eth(src, ETHERTYPE_IPV4, &p)
    }

    fn arp(src: Mac, sender_mac: Mac, sender_ip: Ipv4Addr) -> Vec<u8> {
        let mut p = vec![0, 1, 8, 0, 6, 4, 0, 1];
        p.extend(sender_mac);
        p.extend(sender_ip.octets());
        p.extend([0; 6]);
        p.extend([172, 20, 0, 1]);
        eth(src, ETHERTYPE_ARP, &p)
    }

    #[test]
    fn only_its_own_addresses_pass() {
        let g = PortGuard::new(&[MAC], &[IP]).expect("guard");
        let other_mac = [2, 0x42, 172, 20, 0, 3];
        let other_ip = Ipv4Addr::new(172, 21, 0, 2);
        assert!(g.allows(&ipv4(MAC, IP)));
        assert!(!g.allows(&ipv4(other_mac, IP)), "another MAC");
        assert!(!g.allows(&ipv4(MAC, other_ip)), "another network's address");
        assert!(g.allows(&arp(MAC, MAC, IP)));
        assert!(
            g.allows(&arp(MAC, MAC, Ipv4Addr::UNSPECIFIED)),
            "RFC 5227 probe"
        );
        assert!(!g.allows(&arp(MAC, other_mac, IP)), "ARP for another MAC");
        assert!(
            !g.allows(&arp(MAC, MAC, other_ip)),
            "ARP for another address"
        );
        assert!(!g.allows(&eth(MAC, 0x8100, &[0, 10, 8, 0])), "802.1Q tag");
        assert!(!g.allows(&eth(MAC, 0x88a8, &[0, 10, 8, 0])), "802.1ad tag");
        assert!(
            g.allows(&eth(MAC, ETHERTYPE_IPV6, &[0x60])),
            "IPv6 from its MAC"
        );
        assert!(!g.allows(&[0u8; 10]), "a runt");
        assert!(
            !g.allows(&eth(MAC, ETHERTYPE_IPV4, &[0x45])),
            "a truncated header"
        );
    }

    #[test]
    fn allowed_extras_pass_too() {
        let vip = Ipv4Addr::new(172, 20, 0, 100);
        let mac2 = [2, 0, 0, 0, 0, 9];
        let g = PortGuard::new(&[MAC, mac2], &[IP, vip]).expect("guard");
        assert!(g.allows(&ipv4(MAC, vip)));
        assert!(g.allows(&ipv4(mac2, IP)));
        assert!(g.allows(&arp(mac2, mac2, vip)));
        assert!(PortGuard::new(&[], &[IP]).is_none());
        assert!(PortGuard::new(&[MAC], &[IP; MAX_ADDRESSES + 1]).is_none());
    }
}
