//! Macvlan members of a parent's trunk port, by 802.1Q VLAN.

use super::*;

impl Engine {
    /// Put network `net` on the trunk `parent` (a macvlan parent) with 802.1Q `vid`
    /// (None: untagged). The trunk is opened with `open` on first use (its error comes
    /// back as [`EngineError::Port`]) and shared by every network on that parent.
    /// Returns the network's member port.
    pub fn vlan_attach<E>(
        &mut self,
        parent: &str,
        vid: Option<u16>,
        net: NetId,
        open: impl FnOnce() -> Result<Box<dyn Port>, E>,
    ) -> Result<PortId>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let trunk = match self.trunks.get(parent) {
            Some(t) => *t,
            None => {
                let port = open().map_err(|e| EngineError::Port(Box::new(e)))?;
                let id = self.free_id();
                let worker = self.least_loaded();
                for w in 0..self.workers.len() {
                    if w != worker {
                        self.send(
                            w,
                            PortControl::AddRemotePort {
                                id,
                                net: TRUNK_NET,
                                worker,
                            },
                        )?;
                    }
                }
                self.hand_port(worker, id, TRUNK_NET, port, false, Arc::default())?;
                self.trunks.insert(parent.to_string(), id);
                id
            }
        };
        if let Some((m, _)) = self
            .vlan_members
            .iter()
            .find(|(_, (t, v, _))| *t == trunk && *v == vid)
        {
            let what = vid
                .map(|v| format!("{parent}.{v}"))
                .unwrap_or_else(|| parent.to_string());
            return Err(EngineError::VlanTaken { what, member: *m });
        }
        let member = self.free_id();
        self.vlan_members.insert(member, (trunk, vid, net));
        let owner = self.ports.get(&trunk).map(|p| p.info.worker).unwrap_or(0);
        for w in 0..self.workers.len() {
            if w == owner {
                self.send(
                    w,
                    PortControl::AddVlanMember {
                        trunk,
                        member,
                        vid,
                        net,
                    },
                )?;
            } else {
                self.send(
                    w,
                    PortControl::AddRemotePort {
                        id: member,
                        net,
                        worker: owner,
                    },
                )?;
            }
        }
        self.barrier()?;
        Ok(member)
    }

    /// Take a network off its trunk; when it was the trunk's last network the trunk is
    /// closed and its interface name returned (so the caller can restore it).
    pub fn vlan_detach(&mut self, member: PortId) -> Result<Option<String>> {
        let Some((trunk, _, _)) = self.vlan_members.remove(&member) else {
            return Ok(None);
        };
        self.retired.push((member, std::time::Instant::now()));
        self.broadcast(|| PortControl::RemovePort(member))?;
        self.barrier()?;
        if self.vlan_members.values().any(|(t, _, _)| *t == trunk) {
            return Ok(None);
        }
        let parent = self
            .trunks
            .iter()
            .find(|(_, t)| **t == trunk)
            .map(|(p, _)| p.clone());
        if let Some(p) = &parent {
            self.trunks.remove(p);
        }
        self.remove_port(trunk)?;
        Ok(parent)
    }

    /// The name `fdb` and `stats` show for a trunk member: PARENT.VID (or PARENT).
    pub fn vlan_member_name(&self, member: PortId) -> Option<String> {
        let (trunk, vid, _) = self.vlan_members.get(&member)?;
        let parent = self.ports.get(trunk)?.info.name.clone();
        Some(vid.map(|v| format!("{parent}.{v}")).unwrap_or(parent))
    }
}
