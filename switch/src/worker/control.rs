//! Control messages from the engine, applied between bursts, each by the stage it
//! concerns: port input/output (ports in and out, trunk members, captures), L2
//! (networks, the FDB), the router (uplink, NAT, published ports) and the resolver.

use super::*;
use crate::remote::RemoteUpdate;
use crate::TUNNEL_PORT;

/// Control-plane requests, applied between bursts.
pub enum Control {
    Port(PortControl),
    L2(L2Control),
    Router(RouterControl),
    Dns(DnsControl),
    /// Reply once every message sent before it has been applied.
    Barrier(Sender<()>),
    Stop,
}

/// For port input and output: the ports a worker reads and writes.
pub enum PortControl {
    /// A port this worker owns from now on.
    AddPort(NewPort),
    /// A tc endpoint on a trunk this worker owns.
    AddSkbPort(NewSkbPort),
    /// A port owned by another worker, so frames for it can be handed over.
    AddRemotePort {
        id: PortId,
        net: NetId,
        worker: usize,
    },
    /// A network joins a trunk this or another worker owns, as member port `member`.
    AddVlanMember {
        trunk: PortId,
        member: PortId,
        vid: Option<u16>,
        net: NetId,
    },
    RemovePort(PortId),
    /// Start (Some) or stop (None) copying a port's received and sent frames.
    Capture {
        port: PortId,
        tap: Option<CaptureTap>,
    },
}

/// For the L2 stage: the networks and their FDBs.
pub enum L2Control {
    /// Add a network, or update it (its endpoints came or went).
    AddNetwork(NetConfig),
    RemoveNetwork(NetId),
    /// What endpoint `port` of `net` may send from (None: port security off).
    Guard {
        net: NetId,
        port: PortId,
        guard: Option<crate::port_security::PortGuard>,
    },
    FdbDump {
        net: NetId,
        reply: Sender<Vec<FdbEntry>>,
    },
    /// Remote endpoints of overlay network `net` came or went: static FDB entries and
    /// the ARP proxy here, static tunnel-table entries at the router's VTEP. One
    /// update, shared by every worker.
    Remote {
        net: NetId,
        update: Arc<RemoteUpdate>,
    },
    /// Learned MACs are forgotten after this from now on (every network, and those
    /// made later).
    FdbAge(std::time::Duration),
}

/// For the router (and the vtep it holds).
pub enum RouterControl {
    /// This worker owns the uplink from now on and routes for every worker.
    EnableRouter(Box<Router>),
    /// This worker has the host port from now on.
    EnableHostPort(Box<HostLink>),
    /// The host port's counters, if this worker has it.
    HostPortDump(Sender<Option<HostPortStats>>),
    /// Routed frames go to that worker (None: there is no uplink).
    RouteVia(Option<usize>),
    /// Publish (`add`) or unpublish a port; the router's worker answers.
    PortMapping {
        add: bool,
        mapping: nat::PortMapping,
        reply: Sender<Result<(), crate::engine::EngineError>>,
    },
    /// The router's counters and NAT sessions, if this worker has the router.
    RouterDump(Sender<Option<(RouterStats, Vec<nat::SessionRow>)>>),
    /// While `on`, the router hands none of `port`'s NAT sessions to the kernel (the
    /// port is captured).
    NatExclude { port: PortId, on: bool },
    /// New idle timeouts for UDP and established TCP NAT sessions.
    NatTimeouts {
        udp: std::time::Duration,
        tcp: std::time::Duration,
    },
}

/// For the embedded resolver.
pub enum DnsControl {
    /// A network's names (None: forget them).
    DnsNames {
        net: NetId,
        table: Option<Arc<dns::NameTable>>,
    },
    /// The resolver's counters, if this worker runs it.
    DnsDump(Sender<Option<DnsStats>>),
}

macro_rules! into_control {
    ($($t:ident => $v:ident),*) => {$(
        impl From<$t> for Control {
            fn from(m: $t) -> Control {
                Control::$v(m)
            }
        }
    )*};
}
into_control!(PortControl => Port, L2Control => L2, RouterControl => Router, DnsControl => Dns);

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
                Control::Port(m) => self.port_control(m),
                Control::L2(m) => self.l2_control(m, now),
                Control::Router(m) => self.router_control(m, now),
                Control::Dns(m) => self.dns_control(m),
                Control::Barrier(reply) => {
                    let _ = reply.send(());
                }
                Control::Stop => return Err(()),
            }
        }
    }

    fn port_control(&mut self, msg: PortControl) {
        match msg {
            PortControl::AddPort(p) => self.add_port(p),
            PortControl::AddSkbPort(p) => self.add_skb_port(p),
            PortControl::AddRemotePort { id, net, worker } => {
                self.tx.set_home(id, Some(Home::Remote(worker)));
                self.join_network(net, id);
            }
            PortControl::AddVlanMember {
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
                self.join_network(net, member);
            }
            PortControl::RemovePort(id) => self.remove_port(id),
            PortControl::Capture { port, tap } => self.capture(port, tap),
        }
    }

    fn l2_control(&mut self, msg: L2Control, now: Instant) {
        match msg {
            L2Control::AddNetwork(cfg) => {
                let id = cfg.id;
                let fresh_table = self
                    .router
                    .as_mut()
                    .is_some_and(|r| r.set_overlay(id, cfg.overlay.as_ref()));
                let hosts: HashMap<std::net::Ipv4Addr, Mac> = cfg.hosts.iter().copied().collect();
                match self.nets.get_mut(&cfg.id) {
                    // An update (endpoints came or went): keep what was learned; the NAT
                    // forgets the sessions of addresses that went (a new endpoint given
                    // one must not receive the old one's replies).
                    Some(net) => {
                        if let Some(r) = self.router.as_mut() {
                            for gone in net.hosts.keys().filter(|ip| !hosts.contains_key(ip)) {
                                r.nat.flush_inside(*gone);
                            }
                            let kept = cfg.ipv6.as_ref().map(|v6| &v6.hosts);
                            for gone in net.cfg.ipv6.iter().flat_map(|v6| v6.hosts.keys()) {
                                if !kept.is_some_and(|k| k.contains_key(gone)) {
                                    r.nat.flush_inside(*gone);
                                }
                            }
                        }
                        if cfg.overlay.is_none() {
                            net.clear_remote();
                        }
                        net.cfg = cfg;
                        net.hosts = hosts;
                    }
                    None => {
                        let fdb = Fdb::new(self.setup.fdb_max, self.setup.fdb_age)
                            .with_port_limit(self.setup.fdb_max_per_port);
                        self.nets.insert(
                            cfg.id,
                            Network {
                                cfg,
                                fdb,
                                members: Vec::new(),
                                hosts,
                                guards: Default::default(),
                                storm: crate::storm::Storm::new(self.setup.flood_rate),
                                remote: Default::default(),
                            },
                        );
                    }
                }
                // A new tunnel table (a new VNI) starts with the remote endpoints known.
                if let (true, Some(r), Some(n)) =
                    (fresh_table, self.router.as_mut(), self.nets.get(&id))
                {
                    r.add_remote(id, n.remote.iter(), now);
                }
            }
            L2Control::RemoveNetwork(id) => {
                if let (Some(net), Some(r)) = (self.nets.remove(&id), self.router.as_mut()) {
                    for gone in net.hosts.keys() {
                        r.nat.flush_inside(*gone);
                    }
                    for gone in net.cfg.ipv6.iter().flat_map(|v6| v6.hosts.keys()) {
                        r.nat.flush_inside(*gone);
                    }
                }
                if let Some(r) = self.router.as_mut() {
                    r.set_overlay(id, None);
                }
                if let Some(d) = self.dns.as_mut() {
                    d.set_network(id, None);
                }
            }
            L2Control::Guard { net, port, guard } => {
                if let Some(n) = self.nets.get_mut(&net) {
                    match guard {
                        Some(g) => {
                            n.guards.insert(port, g);
                            // What it learned from other addresses before goes.
                            n.fdb.forget_port(port);
                        }
                        None => {
                            n.guards.remove(&port);
                        }
                    }
                }
            }
            L2Control::FdbDump { net, reply } => {
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
            L2Control::Remote { net, update } => self.update_remote(net, &update, now),
            L2Control::FdbAge(age) => {
                self.setup.fdb_age = age;
                for n in self.nets.values_mut() {
                    n.fdb.set_max_age(age);
                }
            }
        }
    }

    /// Remote endpoints of `id` came or went: this worker's replica, the kernel's FDB
    /// (a MAC that was a local port's is remote now), and the router's VTEP if it is here.
    fn update_remote(&mut self, id: NetId, update: &RemoteUpdate, now: Instant) {
        let Some(net) = self.nets.get_mut(&id).filter(|n| n.cfg.overlay.is_some()) else {
            tracing::debug!(
                net = id,
                "remote endpoints of a network that is no overlay: ignored"
            );
            return;
        };
        net.update_remote(update, now);
        if !self.installed.is_empty() {
            for ep in &update.upsert {
                self.forget_moved(id, ep.mac, TUNNEL_PORT);
            }
        }
        if let Some(r) = self.router.as_mut() {
            r.update_remote(id, update, now);
        }
    }

    fn router_control(&mut self, msg: RouterControl, now: Instant) {
        match msg {
            RouterControl::EnableRouter(mut r) => {
                if let Some(d) = self.dns.as_mut() {
                    d.enable_upstreams(r.uplink_addr(), now);
                    r.dns = true;
                }
                for n in self.nets.values() {
                    if r.set_overlay(n.cfg.id, n.cfg.overlay.as_ref()) {
                        r.add_remote(n.cfg.id, n.remote.iter(), now);
                    }
                }
                self.router = Some(r);
                self.tx.router_at = RouterAt::Local;
            }
            RouterControl::EnableHostPort(h) => {
                self.host = Some(h);
                if self.tx.router_at == RouterAt::Nowhere {
                    self.tx.router_at = RouterAt::Local;
                }
            }
            RouterControl::HostPortDump(reply) => {
                let _ = reply.send(self.host.as_ref().map(|h| h.stats()));
            }
            RouterControl::RouteVia(w) => {
                self.tx.router_at = match w {
                    Some(w) => RouterAt::Remote(w),
                    None => RouterAt::Nowhere,
                };
            }
            RouterControl::PortMapping {
                add,
                mapping,
                reply,
            } => {
                let _ = reply.send(self.port_mapping(add, mapping));
            }
            RouterControl::RouterDump(reply) => {
                let dump = self
                    .router
                    .as_ref()
                    .map(|r| (r.stats(), r.nat.sessions(now)));
                let _ = reply.send(dump);
            }
            RouterControl::NatTimeouts { udp, tcp } => {
                if let Some(r) = self.router.as_mut() {
                    r.nat.set_timeouts(udp, tcp);
                }
            }
            RouterControl::NatExclude { port, on } => {
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
        }
    }

    fn dns_control(&mut self, msg: DnsControl) {
        match msg {
            DnsControl::DnsNames { net, table } => {
                if let Some(d) = self.dns.as_mut() {
                    d.set_network(net, table);
                }
            }
            DnsControl::DnsDump(reply) => {
                let _ = reply.send(self.dns.as_ref().map(|d| d.stats()));
            }
        }
    }

    fn port_mapping(
        &mut self,
        add: bool,
        mapping: nat::PortMapping,
    ) -> Result<(), crate::engine::EngineError> {
        let Some(r) = self.router.as_mut() else {
            return Err(crate::engine::EngineError::Unavailable(
                "publishing ports needs an uplink (vswitchd --uplink)",
            ));
        };
        // The NAT claims what comes to a published port first: the resolver must not
        // send a query from it.
        let dns = self.dns.as_mut();
        if add {
            r.nat.add_port_mapping(mapping)?;
            if let Some(d) = dns {
                d.reserve_port(mapping.host_port, true);
            }
            return Ok(());
        }
        let removed = r.nat.remove_port_mapping(&mapping);
        // The other family's mapping of the same port keeps it reserved.
        let still = r
            .nat
            .port_mappings()
            .any(|m| m.host_port == mapping.host_port && m.proto == mapping.proto);
        if let (Some(d), Some(m), false) = (dns, removed, still) {
            d.reserve_port(m.host_port, false);
        }
        // Only IPv4 sessions to published ports open in the kernel.
        if let (nat::Proto::Tcp, true, Some(f)) = (
            mapping.proto,
            mapping.target_ip.is_ipv4(),
            r.fast_nat.as_mut(),
        ) {
            f.unpublish(mapping.host_port);
        }
        Ok(())
    }

    /// Port `id` is a member of network `net` (its floods reach it).
    fn join_network(&mut self, net: NetId, id: PortId) {
        if let Some(n) = self.nets.get_mut(&net) {
            n.members.push(id);
        }
    }

    fn add_skb_port(&mut self, p: NewSkbPort) {
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
        self.join_network(p.net, p.id);
    }

    fn capture(&mut self, port: PortId, tap: Option<CaptureTap>) {
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

    pub(super) fn add_port(&mut self, p: NewPort) {
        if self.armed {
            watch(&self.epoll, p.port.as_ref(), p.id);
        }
        self.join_network(p.net, p.id);
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
            net.guards.remove(&id);
            net.storm.forget(id);
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
