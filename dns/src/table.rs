//! One network's names: what the resolver answers from local data. Built (and validated)
//! by the control plane, then handed to each worker's resolver as an immutable snapshot.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::Name;

/// One endpoint on a network, as the resolver sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The sandbox's name; PTR queries for the endpoint's addresses answer with it.
    pub name: String,
    /// The endpoint's `--alias` names on this network (A/AAAA only, like Docker).
    pub aliases: Vec<String>,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
}

/// A name the control plane tried to publish that DNS cannot carry.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("DNS name {name:?} is not valid ({reason}); use letters, digits, '_', '-' and '.', labels of at most 63 bytes")]
    Invalid { name: String, reason: String },
}

/// The addresses one name resolves to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Addrs {
    pub v4: Vec<Ipv4Addr>,
    pub v6: Vec<Ipv6Addr>,
}

/// Names (case-folded) to addresses, and addresses back to the sandbox name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NameTable {
    forward: HashMap<Vec<u8>, Addrs>,
    reverse: HashMap<IpAddr, Name>,
}

impl NameTable {
    /// Build a network's table from its endpoints. Several endpoints may share a name or
    /// alias: the name then resolves to all their addresses. For PTR, the first record
    /// naming an address wins.
    pub fn new(records: &[Record]) -> Result<Self, NameError> {
        let mut t = NameTable::default();
        for r in records {
            let sandbox = parse_name(&r.name)?;
            for n in std::iter::once(&sandbox).chain(
                r.aliases
                    .iter()
                    .map(|a| parse_name(a))
                    .collect::<Result<Vec<_>, _>>()?
                    .iter(),
            ) {
                let addrs = t.forward.entry(key(n)).or_default();
                if let Some(a) = r.ipv4 {
                    if !addrs.v4.contains(&a) {
                        addrs.v4.push(a);
                    }
                }
                if let Some(a) = r.ipv6 {
                    if !addrs.v6.contains(&a) {
                        addrs.v6.push(a);
                    }
                }
            }
            for ip in [r.ipv4.map(IpAddr::V4), r.ipv6.map(IpAddr::V6)]
                .into_iter()
                .flatten()
            {
                t.reverse.entry(ip).or_insert_with(|| sandbox.clone());
            }
        }
        Ok(t)
    }

    /// The addresses of `name`, if this network owns it (any case, trailing dot or not).
    pub(crate) fn lookup(&self, name: &Name) -> Option<&Addrs> {
        self.forward.get(&key(name))
    }

    /// The sandbox name owning `ip` on this network.
    pub(crate) fn reverse(&self, ip: IpAddr) -> Option<&Name> {
        self.reverse.get(&ip)
    }

    /// How many distinct names the table holds.
    pub fn len(&self) -> usize {
        self.forward.len()
    }

    pub fn is_empty(&self) -> bool {
        self.forward.is_empty()
    }
}

fn parse_name(s: &str) -> Result<Name, NameError> {
    let invalid = |reason: String| NameError::Invalid {
        name: s.to_string(),
        reason,
    };
    let trimmed = s.strip_suffix('.').unwrap_or(s);
    if trimmed.is_empty() {
        return Err(invalid("empty".into()));
    }
    // ASCII as given (Docker names may hold '_', which IDNA refuses); IDNA only for
    // non-ASCII names, which the client will ask for in punycode.
    let parsed = if trimmed.is_ascii() {
        Name::from_ascii(trimmed)
    } else {
        Name::from_utf8(trimmed)
    };
    let mut n = parsed.map_err(|e| invalid(e.to_string()))?;
    if n.iter().any(|l| l.is_empty()) {
        return Err(invalid("empty label".into()));
    }
    n.set_fqdn(true);
    Ok(n)
}

/// The lookup key: the name's labels in wire form (length-prefixed), ASCII case-folded, so
/// a label holding a literal '.' cannot collide with two labels.
fn key(name: &Name) -> Vec<u8> {
    let mut k = Vec::with_capacity(name.len() + 1);
    for label in name.iter() {
        k.push(label.len() as u8);
        k.extend(label.iter().map(u8::to_ascii_lowercase));
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str, aliases: &[&str], v4: [u8; 4]) -> Record {
        Record {
            name: name.into(),
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
            ipv4: Some(v4.into()),
            ipv6: None,
        }
    }

    #[test]
    fn names_fold_case_and_ignore_trailing_dot() {
        let t = NameTable::new(&[rec("Web.", &["DB.example"], [172, 18, 0, 2])]).unwrap();
        for q in ["web", "WEB.", "db.EXAMPLE", "Db.Example."] {
            let n = Name::from_ascii(q).unwrap();
            assert_eq!(
                t.lookup(&n).map(|a| a.v4.clone()),
                Some(vec![Ipv4Addr::new(172, 18, 0, 2)]),
                "{q}"
            );
        }
        assert!(t
            .lookup(&Name::from_ascii("web.example").unwrap())
            .is_none());
    }

    #[test]
    fn shared_alias_collects_every_address_once() {
        let t = NameTable::new(&[
            rec("a", &["svc"], [10, 0, 0, 1]),
            rec("b", &["svc", "SVC"], [10, 0, 0, 2]),
        ])
        .unwrap();
        let a = t.lookup(&Name::from_ascii("svc").unwrap()).unwrap();
        assert_eq!(a.v4.len(), 2);
        assert_eq!(
            t.reverse(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))),
            Some(&Name::from_ascii("b.").unwrap())
        );
    }

    #[test]
    fn docker_style_names_are_accepted() {
        // Docker allows [a-zA-Z0-9][a-zA-Z0-9_.-]* for container names.
        let names = ["my_app-1", "App.v2", "a", "x1_2.y-3"];
        for n in names {
            let t = NameTable::new(&[rec(n, &[], [10, 0, 0, 1])]);
            let t = t.unwrap_or_else(|e| panic!("{n}: {e}"));
            let q = Name::from_ascii(n.to_uppercase()).unwrap();
            assert!(t.lookup(&q).is_some(), "{n}");
        }
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in ["", ".", "a..b", &"x".repeat(64)] {
            assert!(
                NameTable::new(&[rec(bad, &[], [10, 0, 0, 1])]).is_err(),
                "{bad:?}"
            );
        }
    }
}
