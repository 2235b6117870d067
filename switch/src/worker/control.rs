//! Control messages from the engine, applied between bursts: ports in and out, networks,
//! the router, captures, the fast path.

use super::*;

impl Worker {
    /// Apply pending control messages; Err(()) means stop.
    pub(super) fn apply_control(&mut self, now: Instant) -> Result<usize, ()> {
        let mut n = 0;
        loop {
            let msg = match self.control.try_recv() {
                Ok(m) => m,
                Err(TryRecvError::Empty) => return Ok(n),
                Err(TryRecvError::Disconnected) => return Err(()),
            };
            n += 1;
            match msg {
                Control::AddNetwork(cfg) => {
                    if let Some(r) = self.router.as_mut() {
                        r.set_overlay(cfg.id, cfg.overlay.as_ref());
                    }
                    let hosts = cfg.hosts.iter().copied().collect();
                    match self.nets.get_mut(&cfg.id) {
                        // An update (endpoints came or went): keep what was learned.
                        Some(net) => {
                            net.cfg = cfg;
                            net.hosts = hosts;
                        }
                        None => {
                            let fdb = Fdb::new(self.setup.fdb_max, self.setup.fdb_age);
                            self.nets.insert(
                                cfg.id,
                                Network {
                                    cfg,
                                    fdb,
                                    members: Vec::new(),
                                    hosts,
                                },
                            );
                        }
                    }
                }
                Control::RemoveNetwork(id) => {
                    self.nets.remove(&id);
                    if let Some(r) = self.router.as_mut() {
                        r.set_overlay(id, None);
                    }
                    if let Some(d) = self.dns.as_mut() {
                        d.set_network(id, None);
                    }
                }
                Control::DnsNames { net, table } => {
                    if let Some(d) = self.dns.as_mut() {
                        d.set_network(net, table);
                    }
                }
                Control::DnsDump(reply) => {
                    let _ = reply.send(self.dns.as_ref().map(|d| d.stats()));
                }
                Control::AddPort(p) => self.add_port(p),
                Control::NatExclude { port, on } => {
                    if let Some(r) = self.router.as_mut() {
                        // The uplink itself: nothing routed or tunnelled in the kernel.
                        let uplink = port == r.port;
                        if let Some(f) = r.fast_nat.as_mut() {
                            f.exclude(port, on, uplink);
                        }
                        if let (true, Some(f)) = (uplink, r.fast_vxlan.as_mut()) {
                            f.exclude(on);
                        }
                    }
                }
                Control::AddSkbPort(p) => {
                    let i = p.id as usize;
                    if self.tx.skb.len() <= i {
                        self.tx.skb.resize_with(i + 1, || None);
                    }
                    self.tx.skb[i] = Some(SkbMember {
                        net: p.net,
                        counters: p.counters,
                        capture: None,
                    });
                    self.tx.set_home(p.id, Some(Home::Skb { trunk: p.trunk }));
                    if let Some(n) = self.nets.get_mut(&p.net) {
                        n.members.push(p.id);
                    }
                }
                Control::AddRemotePort { id, net, worker } => {
                    self.tx.set_home(id, Some(Home::Remote(worker)));
                    if let Some(n) = self.nets.get_mut(&net) {
                        n.members.push(id);
                    }
                }
                Control::RemovePort(id) => self.remove_port(id),
                Control::Capture { port, tap } => {
                    // A captured port's frames all go through the worker, both ways.
                    if tap.is_some() {
                        self.uninstall_port(port);
                    }
                    match self.tx.home(port) {
                        Some(Home::Local(i)) => self.tx.ports[i].capture = tap,
                        Some(Home::Skb { .. }) => {
                            if let Some(Some(m)) = self.tx.skb.get_mut(port as usize) {
                                m.capture = tap;
                            }
                        }
                        _ => {}
                    }
                }
                Control::FdbDump { net, reply } => {
                    let mut entries = self
                        .nets
                        .get(&net)
                        .map(|n| n.fdb.entries(now))
                        .unwrap_or_default();
                    if let (Some(r), Some(n)) = (self.router.as_ref(), self.nets.get(&net)) {
                        r.fill_vteps(n, &mut entries, now);
                    }
                    let _ = reply.send(entries);
                }
                Control::EnableRouter(mut r) => {
                    if let Some(d) = self.dns.as_mut() {
                        d.enable_upstreams(r.uplink_addr(), now);
                        r.dns_port = Some(d.port);
                    }
                    for n in self.nets.values() {
                        r.set_overlay(n.cfg.id, n.cfg.overlay.as_ref());
                    }
                    self.router = Some(r);
                    self.tx.router_at = RouterAt::Local;
                }
                Control::RouteVia(w) => {
                    self.tx.router_at = match w {
                        Some(w) => RouterAt::Remote(w),
                        None => RouterAt::Nowhere,
                    };
                }
                Control::PortMapping {
                    add,
                    mapping,
                    reply,
                } => {
                    let result = match self.router.as_mut() {
                        None => Err(crate::engine::EngineError::Unavailable(
                            "publishing ports needs an uplink (vswitchd --uplink)",
                        )),
                        Some(r) if add => r.nat.add_port_mapping(mapping).map_err(Into::into),
                        Some(r) => {
                            r.nat.remove_port_mapping(
                                mapping.proto,
                                mapping.host_ip,
                                mapping.host_port,
                            );
                            if let (nat::Proto::Tcp, Some(f)) = (mapping.proto, r.fast_nat.as_mut())
                            {
                                f.unpublish(mapping.host_port);
                            }
                            Ok(())
                        }
                    };
                    let _ = reply.send(result);
                }
                Control::RouterDump(reply) => {
                    let dump = self
                        .router
                        .as_ref()
                        .map(|r| (r.stats(), r.nat.sessions(now)));
                    let _ = reply.send(dump);
                }
                Control::Barrier(reply) => {
                    let _ = reply.send(());
                }
                Control::AddVlanMember {
                    trunk,
                    member,
                    vid,
                    net,
                } => {
                    if let Some(Home::Local(i)) = self.tx.home(trunk) {
                        self.tx.ports[i].vlans.push(VlanMember {
                            vid,
                            id: member,
                            net,
                            rx: Burst::new(),
                        });
                        self.tx.set_home(member, Some(Home::Vlan { port: i, vid }));
                    }
                    if let Some(n) = self.nets.get_mut(&net) {
                        n.members.push(member);
                    }
                }
                Control::Stop => return Err(()),
            }
        }
    }

    pub(super) fn add_port(&mut self, p: NewPort) {
        if self.armed {
            watch(&self.epoll, p.port.as_ref(), p.id);
        }
        if let Some(net) = self.nets.get_mut(&p.net) {
            net.members.push(p.id);
        }
        let idx = self.tx.ports.len();
        self.tx.set_home(p.id, Some(Home::Local(idx)));
        self.tx.ports.push(OwnedPort {
            id: p.id,
            net: p.net,
            port: p.port,
            tx: Burst::new(),
            counters: p.counters,
            faulted: false,
            capture: None,
            fast: p.fast,
            vlans: Vec::new(),
        });
    }

    pub(super) fn remove_port(&mut self, id: PortId) {
        self.uninstall_port(id);
        if let Some(f) = self.router.as_mut().and_then(|r| r.fast_nat.as_mut()) {
            f.forget_port(id);
        }
        for net in self.nets.values_mut() {
            net.members.retain(|p| *p != id);
            net.fdb.forget_port(id);
        }
        if let Some(Home::Vlan { port, .. }) = self.tx.home(id) {
            self.tx.ports[port].vlans.retain(|m| m.id != id);
        }
        if let Some(m) = self.tx.skb.get_mut(id as usize) {
            *m = None;
        }
        if let Some(Home::Local(i)) = self.tx.home(id) {
            self.tx.flush_port(i);
            let op = self.tx.ports.swap_remove(i);
            if let (false, true, Some(fd)) = (op.faulted, self.armed, fd_of(op.port.as_ref())) {
                let _ = self.epoll.delete(fd);
            }
            self.tx.dirty.retain(|d| *d != i);
            if i < self.tx.ports.len() {
                let moved = self.tx.ports[i].id;
                self.tx.set_home(moved, Some(Home::Local(i)));
                // A moved trunk's members now leave by index i.
                let members: Vec<(PortId, Option<u16>)> = self.tx.ports[i]
                    .vlans
                    .iter()
                    .map(|m| (m.id, m.vid))
                    .collect();
                for (m, vid) in members {
                    self.tx.set_home(m, Some(Home::Vlan { port: i, vid }));
                }
                let last = self.tx.ports.len();
                for d in self.tx.dirty.iter_mut() {
                    if *d == last {
                        *d = i;
                    }
                }
            }
        }
        self.tx.set_home(id, None);
    }
}
