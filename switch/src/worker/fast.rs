//! Keeping the fast path's FDB in step with what this worker learned.

use super::*;

impl Worker {
    /// After a burst from port `id` of `net`: sources the FDB has on it are installed in
    /// the fast path when the port runs it (`install`), so the kernel forwards their
    /// conversations from now on; a source installed on another of this worker's ports
    /// has moved here, and leaves the fast path (a port off the fast path, or one being
    /// captured, gets its frames through the worker).
    pub(super) fn sync_sources(
        &mut self,
        id: PortId,
        net: NetId,
        install: bool,
        rx: &Burst,
        now: Instant,
    ) {
        let (Some(fp), Some(n)) = (self.setup.fast.as_ref(), self.nets.get(&net)) else {
            return;
        };
        let mut last: Option<Mac> = None;
        let mut flushed = false;
        for frame in rx.iter() {
            let Some(src) = frame.get(6..12) else {
                continue;
            };
            let src: Mac = src.try_into().expect("six bytes");
            if last == Some(src) || src[0] & 1 != 0 {
                continue;
            }
            last = Some(src);
            let here = n.fdb.lookup(&src, now) == Some(id);
            let old = self.installed.get(&(net, src)).copied();
            match old {
                Some(p) if p == id => continue,
                Some(p) if here => {
                    fp.remove(net, src, p);
                    self.installed.remove(&(net, src));
                }
                None if here => {}
                _ => continue,
            }
            if install {
                // What the worker has queued goes out before the kernel takes over, so
                // the kernel's first frames of a conversation do not overtake them.
                if !flushed {
                    self.tx.flush();
                    flushed = true;
                }
                install_mac(&mut self.installed, fp, net, src, id);
            }
        }
    }

    /// Another worker learned `mac` on its `port`: if this worker had it installed on one
    /// of its own ports, that entry is stale.
    pub(super) fn forget_moved(&mut self, net: NetId, mac: Mac, port: PortId) {
        if let (Some(fp), Some(&p)) = (self.setup.fast.as_ref(), self.installed.get(&(net, mac))) {
            if p != port {
                fp.remove(net, mac, p);
                self.installed.remove(&(net, mac));
            }
        }
    }

    /// Take every entry of port `id` out of the fast path.
    pub(super) fn uninstall_port(&mut self, id: PortId) {
        let Some(fp) = self.setup.fast.as_ref() else {
            return;
        };
        self.installed.retain(|&(net, mac), port| {
            if *port == id {
                fp.remove(net, mac, id);
            }
            *port != id
        });
    }

    /// Once a second, for every entry this worker installed: one the FDB no longer has on
    /// its port (aged, moved) leaves the fast path; one the kernel forwarded frames from
    /// since the last look (its `seen` mark) is refreshed in the FDB, as the worker never
    /// saw those frames; one that another worker's removal or install raced away is put
    /// back. A syscall or two per entry per second, none per frame.
    pub(super) fn sync_fast_path(&mut self, now: Instant) {
        let Some(fp) = self.setup.fast.clone() else {
            return;
        };
        let multi = self.tx.peers.len() > 1;
        let (nets, tx) = (&mut self.nets, &mut self.tx);
        self.installed.retain(|&(net, mac), port| {
            let Some(n) = nets
                .get_mut(&net)
                .filter(|n| n.fdb.lookup(&mac, now) == Some(*port))
            else {
                fp.remove(net, mac, *port);
                return false;
            };
            match fp.take_seen(net, mac, *port) {
                Some(true) => {
                    if n.fdb.learn(mac, *port, now) == Learned::Reannounce && multi {
                        tx.learned(net, mac, *port);
                    }
                    true
                }
                Some(false) => true,
                None => fp.install(net, mac, *port).is_ok(),
            }
        });
    }
}

/// Install `mac` of `net` on port `id` in the fast path, and note it in `installed`.
fn install_mac(
    installed: &mut HashMap<(NetId, Mac), PortId, ahash::RandomState>,
    fp: &FastPath,
    net: NetId,
    mac: Mac,
    id: PortId,
) {
    match fp.install(net, mac, id) {
        Ok(()) => {
            installed.insert((net, mac), id);
        }
        // The map is full: this address stays with the worker.
        Err(e) => tracing::debug!(error = %e, "fast path: cannot install a MAC"),
    }
}
