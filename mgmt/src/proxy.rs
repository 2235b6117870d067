//! The userland proxy for published ports, as Docker's `docker-proxy`: a listener on
//! the host side (in vswitchd's own network namespace) per published address that
//! relays each TCP connection, or each UDP client's datagrams, to the container's
//! address and port.
//!
//! Why a proxy: a host process that connects to 127.0.0.1:8080 or to one of the host's
//! own addresses is routed through `lo` by the kernel and never reaches a switch port,
//! so the switch's NAT never sees it. Docker serves that traffic the same way, with
//! docker-proxy. The alternative, `route_localnet` and a DNAT rule in the host's
//! OUTPUT chain, needs netfilter rules in the host's tables, which vswitch otherwise
//! never touches.
//!
//! What the container sees: the proxy's own connection, whose source is the host's
//! address on the route to the container (the kernel chooses it: the sockets towards
//! the target are bound to the wildcard), as Docker's proxy shows the bridge's address
//! (172.17.0.1). The original client's address is not passed on.
//!
//! - TCP: each accepted connection gets a non-blocking connect to the target
//!   ([`CONNECT_TIMEOUT`]; on failure the client's connection is closed), then bytes are
//!   relayed both ways through a [`BUFFER`]-byte ring per direction: a side that does not
//!   read stops the relay from reading the other (backpressure, no growth). A FIN from
//!   one side, once what it sent is delivered, shuts down writing to the other
//!   (half-close, as docker-proxy's `CloseWrite`); the connection closes when both
//!   directions are done. A read or write error (a reset) aborts both sides with a
//!   reset. At most [`MAX_CONNECTIONS`] connections (connecting or relaying) per proxy;
//!   beyond that new ones are accepted and closed at once, counted and logged at debug.
//!   Both sides get `TCP_NODELAY` and keepalive (15 s idle and interval), as Go's
//!   sockets in docker-proxy do, so a vanished peer does not hold a slot forever.
//! - UDP: one socket bound to the listen address; per client address a socket
//!   connected to the target, whose replies go back to that client from the listening
//!   socket. A flow idle (no datagram either way) for [`UDP_IDLE`] (docker-proxy's
//!   90 s) is closed; at most [`MAX_FLOWS`] flows, datagrams from further clients are
//!   dropped (counted, logged at debug). ICMP port unreachable from the target (nothing
//!   listening yet) is ignored, as docker-proxy does. Datagrams that find a socket's
//!   send buffer full are dropped, as a router would.
//!
//! Threads: one per `Proxy`, running a mio event loop (edge-triggered), woken by a
//! `mio::Waker` when the `Proxy` is dropped; `Drop` joins it, and every socket of the
//! proxy is closed when its thread returns. One thread per proxy rather than one
//! shared: a proxy's lifetime is then its thread's, with no registration channel or
//! per-proxy bookkeeping in a shared loop, one busy port does not delay the others',
//! and published ports are few (a thread asleep in `epoll_wait` costs a few pages).
//! Within a thread, each socket gets a bounded turn (bytes or datagrams) per wakeup and
//! is queued to continue after the others, so one fast connection does not starve the
//! rest.
//!
//! Listeners: TCP listeners have `SO_REUSEADDR` (as Docker; not `SO_REUSEPORT`, so a
//! second listener on the same port is refused), and IPv6 ones `IPV6_V6ONLY`, so that
//! `[::]:P` coexists with `0.0.0.0:P`. Nothing read from the network can panic the
//! loop: every I/O result is matched.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Token, Waker};
use nix::sys::socket::{
    self as sock, sockopt, AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, SockaddrIn6,
};

use crate::publish::Proto;

/// Concurrent TCP connections per proxy (connecting or relaying).
pub const MAX_CONNECTIONS: usize = 1024;
/// Concurrent UDP client flows per proxy.
pub const MAX_FLOWS: usize = 1024;
/// How long a connection to the target may take before the client is closed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A UDP flow with no datagram either way for this long is closed (docker-proxy's).
pub const UDP_IDLE: Duration = Duration::from_secs(90);
/// Bytes buffered per direction of a TCP connection.
pub const BUFFER: usize = 64 * 1024;

/// TCP keepalive idle time and probe interval, in seconds (Go's default, as in
/// docker-proxy).
const KEEPALIVE_SECS: u32 = 15;
/// Listen backlog (the kernel caps it at `net.core.somaxconn`).
const BACKLOG: i32 = 1024;
/// Bytes one direction of a connection moves per turn before the others get theirs.
const TCP_TURN: usize = 4 * BUFFER;
/// Connections accepted, or datagrams read from one socket, per turn.
const TURN: usize = 64;
/// The largest UDP payload (IPv6 without jumbograms; IPv4's is smaller).
const DATAGRAM: usize = 65535;
/// UDP flows are checked for idleness at most this often.
const SWEEP: Duration = Duration::from_secs(1);

const WAKER: Token = Token(0);
const LISTENER: Token = Token(1);
const FIRST: usize = 2;

/// The limits of one proxy; tests shrink them.
#[derive(Clone, Copy, Debug)]
struct Limits {
    connections: usize,
    flows: usize,
    connect_timeout: Duration,
    udp_idle: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connections: MAX_CONNECTIONS,
            flows: MAX_FLOWS,
            connect_timeout: CONNECT_TIMEOUT,
            udp_idle: UDP_IDLE,
        }
    }
}

/// A proxy for one listening address and protocol. Dropping it stops its thread and
/// closes its listener and every connection or flow.
pub struct Proxy {
    proto: Proto,
    local: SocketAddr,
    target: SocketAddr,
    waker: Waker,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Proxy({}/{} -> {})", self.local, self.proto, self.target)
    }
}

impl Proxy {
    /// Listen on `listen` (IPv4 or IPv6; an IPv6 wildcard `[::]` is IPV6_V6ONLY so that it
    /// can coexist with a 0.0.0.0 listener on the same port) for `proto` and relay to `target`.
    ///
    /// Errors name the address: "listen on 0.0.0.0:8080/tcp: Address already in use
    /// (os error 98)"; their kind is the system's (`AddrInUse` there).
    pub fn start(proto: Proto, listen: SocketAddr, target: SocketAddr) -> io::Result<Proxy> {
        Self::start_with(proto, listen, target, Limits::default())
    }

    fn start_with(
        proto: Proto,
        listen: SocketAddr,
        target: SocketAddr,
        limits: Limits,
    ) -> io::Result<Proxy> {
        let ctx =
            |e: io::Error| io::Error::new(e.kind(), format!("listen on {listen}/{proto}: {e}"));
        let fd = listen_socket(proto, listen).map_err(ctx)?;
        let poll = Poll::new().map_err(|e| ctx(step("create the event loop", e)))?;
        let waker = Waker::new(poll.registry(), WAKER)
            .map_err(|e| ctx(step("create the event loop's waker", e)))?;
        let (local, run): (SocketAddr, Box<dyn FnOnce() -> io::Result<()> + Send>) = match proto {
            Proto::Tcp => {
                let mut listener = TcpListener::from(fd);
                let local = listener.local_addr().map_err(ctx)?;
                poll.registry()
                    .register(&mut listener, LISTENER, Interest::READABLE)
                    .map_err(|e| ctx(step("watch the listener", e)))?;
                let relay = TcpRelay::new(poll, listener, target, limits);
                (local, Box::new(move || relay.run()))
            }
            Proto::Udp => {
                let mut socket = UdpSocket::from(fd);
                let local = socket.local_addr().map_err(ctx)?;
                poll.registry()
                    .register(&mut socket, LISTENER, Interest::READABLE)
                    .map_err(|e| ctx(step("watch the socket", e)))?;
                let relay = UdpRelay::new(poll, socket, target, limits);
                (local, Box::new(move || relay.run()))
            }
        };
        let thread = std::thread::Builder::new()
            // 15 bytes at most: "proxy 65535/tcp".
            .name(format!("proxy {}/{proto}", local.port()))
            .spawn(move || {
                tracing::debug!(listen = %local, %proto, %target, "proxy started");
                match run() {
                    Ok(()) => tracing::debug!(listen = %local, %proto, "proxy stopped"),
                    Err(e) => {
                        tracing::error!(listen = %local, %proto, error = %e, "proxy failed")
                    }
                }
            })
            .map_err(|e| ctx(step("start the proxy thread", e)))?;
        Ok(Proxy {
            proto,
            local,
            target,
            waker,
            thread: Some(thread),
        })
    }

    /// The address listened on (with the port the kernel chose if `listen` had port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn proto(&self) -> Proto {
        self.proto
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        if let Err(e) = self.waker.wake() {
            // Not joined: it would wait forever. Its sockets stay until the process ends.
            tracing::warn!(listen = %self.local, proto = %self.proto, error = %e,
                "cannot wake the proxy thread to stop it");
            return;
        }
        if thread.join().is_err() {
            tracing::error!(listen = %self.local, proto = %self.proto, "proxy thread panicked");
        }
    }
}

fn step(what: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// A bound (and for TCP listening) non-blocking socket. The bind's own error is
/// returned as it is; the other steps say which they were.
fn listen_socket(proto: Proto, listen: SocketAddr) -> io::Result<OwnedFd> {
    let fd = unbound_socket(proto, listen)?;
    match listen {
        SocketAddr::V4(a) => sock::bind(fd.as_raw_fd(), &SockaddrIn::from(a))?,
        SocketAddr::V6(a) => sock::bind(fd.as_raw_fd(), &SockaddrIn6::from(a))?,
    }
    if proto == Proto::Tcp {
        let backlog = Backlog::new(BACKLOG).map_err(|e| step("listen", e.into()))?;
        sock::listen(&fd, backlog).map_err(|e| step("listen", e.into()))?;
    }
    Ok(fd)
}

/// The socket for `listen`, its options set, before the bind.
fn unbound_socket(proto: Proto, listen: SocketAddr) -> io::Result<OwnedFd> {
    let family = match listen {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let ty = match proto {
        Proto::Tcp => SockType::Stream,
        Proto::Udp => SockType::Datagram,
    };
    let fd = sock::socket(
        family,
        ty,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| step("create the socket", e.into()))?;
    if proto == Proto::Tcp {
        sock::setsockopt(&fd, sockopt::ReuseAddr, &true)
            .map_err(|e| step("set SO_REUSEADDR", e.into()))?;
    }
    // Linux makes a socket bound to a specific IPv6 address V6ONLY by itself; the
    // wildcard needs it set. A v4-mapped address is an IPv4 listener in disguise:
    // V6ONLY would refuse it.
    if let SocketAddr::V6(a) = listen {
        if a.ip().to_ipv4_mapped().is_none() {
            sock::setsockopt(&fd, sockopt::Ipv6V6Only, &true)
                .map_err(|e| step("set IPV6_V6ONLY", e.into()))?;
        }
    }
    Ok(fd)
}

/// Whether a poll error only means "try again".
fn interrupted(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Interrupted
}

/// Slots with a generation, so that entries queued for a slot (connect deadlines)
/// are not applied to a later occupant. Tokens carry only the slot: an event left over
/// from an earlier occupant is harmless (it makes the loop try I/O that would block).
struct Slab<T> {
    slots: Vec<(u32, Option<T>)>,
    free: Vec<usize>,
    len: usize,
}

impl<T> Slab<T> {
    fn new() -> Self {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    /// The slot the next `insert` takes.
    fn next_slot(&self) -> usize {
        self.free.last().copied().unwrap_or(self.slots.len())
    }

    fn insert(&mut self, v: T) -> (usize, u32) {
        self.len += 1;
        let i = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push((0, None));
                self.slots.len() - 1
            }
        };
        let slot = &mut self.slots[i];
        slot.0 = slot.0.wrapping_add(1);
        slot.1 = Some(v);
        (i, slot.0)
    }

    fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        self.slots.get_mut(i).and_then(|s| s.1.as_mut())
    }

    fn get_gen(&mut self, i: usize, gen: u32) -> Option<&mut T> {
        self.slots
            .get_mut(i)
            .filter(|s| s.0 == gen)
            .and_then(|s| s.1.as_mut())
    }

    fn remove(&mut self, i: usize) -> Option<T> {
        let v = self.slots.get_mut(i).and_then(|s| s.1.take());
        if v.is_some() {
            self.len -= 1;
            self.free.push(i);
        }
        v
    }

    fn iter(&self) -> impl Iterator<Item = (usize, &T)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.1.as_ref().map(|v| (i, v)))
    }
}

// ---- TCP ----

/// A fixed ring of bytes read from one side, not yet written to the other.
struct Ring {
    buf: Box<[u8]>,
    head: usize,
    len: usize,
}

impl Ring {
    fn new() -> Ring {
        Ring {
            buf: vec![0; BUFFER].into_boxed_slice(),
            head: 0,
            len: 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn is_full(&self) -> bool {
        self.len == self.buf.len()
    }

    /// The contiguous free space after the data.
    fn free(&mut self) -> &mut [u8] {
        let cap = self.buf.len();
        let tail = self.head + self.len;
        if tail < cap {
            &mut self.buf[tail..]
        } else {
            &mut self.buf[tail - cap..self.head]
        }
    }

    fn filled(&mut self, n: usize) {
        self.len = (self.len + n).min(self.buf.len());
    }

    /// The contiguous data from the head.
    fn data(&self) -> &[u8] {
        let end = (self.head + self.len).min(self.buf.len());
        &self.buf[self.head..end]
    }

    fn consume(&mut self, n: usize) {
        let n = n.min(self.len);
        self.len -= n;
        self.head = if self.len == 0 {
            0
        } else {
            (self.head + n) % self.buf.len()
        };
    }
}

/// One direction of a relayed connection.
struct Half {
    ring: Ring,
    /// The source has not sent its FIN yet.
    reading: bool,
    /// Writing to the destination is shut down: this direction is done.
    shut: bool,
}

impl Half {
    fn new() -> Half {
        Half {
            ring: Ring::new(),
            reading: true,
            shut: false,
        }
    }

    /// Move bytes from `src` to `dst` until both would block, the source's FIN has been
    /// passed on, or the turn is used up (then true: come back after the others).
    fn pump(&mut self, src: &mut TcpStream, dst: &mut TcpStream) -> io::Result<bool> {
        let mut moved = 0;
        while !self.shut {
            let mut progress = false;
            if self.reading && !self.ring.is_full() {
                match src.read(self.ring.free()) {
                    Ok(0) => {
                        self.reading = false;
                        progress = true;
                    }
                    Ok(n) => {
                        self.ring.filled(n);
                        moved += n;
                        progress = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if interrupted(&e) => progress = true,
                    Err(e) => return Err(e),
                }
            }
            if !self.ring.is_empty() {
                match dst.write(self.ring.data()) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => {
                        self.ring.consume(n);
                        progress = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if interrupted(&e) => progress = true,
                    Err(e) => return Err(e),
                }
            }
            if !self.reading && self.ring.is_empty() {
                // A peer already gone fails here too; its read says so next.
                let _ = dst.shutdown(Shutdown::Write);
                self.shut = true;
            } else if !progress {
                return Ok(false);
            } else if moved >= TCP_TURN {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

struct Conn {
    client: TcpStream,
    target: TcpStream,
    peer: SocketAddr,
    /// None while connecting to the target.
    relay: Option<(Half, Half)>,
}

fn client_token(slot: usize) -> Token {
    Token(FIRST + 2 * slot)
}

fn target_token(slot: usize) -> Token {
    Token(FIRST + 2 * slot + 1)
}

/// Best effort: a socket that refuses an option still relays.
fn tune(s: &TcpStream) {
    let _ = s.set_nodelay(true);
    let _ = sock::setsockopt(s, sockopt::KeepAlive, &true);
    let _ = sock::setsockopt(s, sockopt::TcpKeepIdle, &KEEPALIVE_SECS);
    let _ = sock::setsockopt(s, sockopt::TcpKeepInterval, &KEEPALIVE_SECS);
}

/// Close with a reset rather than a FIN (SO_LINGER 0).
fn reset<S: AsFd>(s: &S) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    let _ = sock::setsockopt(s, sockopt::Linger, &l);
}

struct TcpRelay {
    poll: Poll,
    listener: TcpListener,
    target: SocketAddr,
    limits: Limits,
    conns: Slab<Conn>,
    /// Connect deadlines in order (the timeout is the same for all).
    connecting: VecDeque<(Instant, usize, u32)>,
    /// Connections whose turn ran out, to continue after this round's events.
    again: Vec<usize>,
    accept_again: bool,
    /// Connections closed at once because the proxy was full.
    refused: u64,
}

impl TcpRelay {
    fn new(poll: Poll, listener: TcpListener, target: SocketAddr, limits: Limits) -> Self {
        TcpRelay {
            poll,
            listener,
            target,
            limits,
            conns: Slab::new(),
            connecting: VecDeque::new(),
            again: Vec::new(),
            accept_again: false,
            refused: 0,
        }
    }

    fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(256);
        loop {
            let timeout = if !self.again.is_empty() || self.accept_again {
                Some(Duration::ZERO)
            } else {
                self.connecting
                    .front()
                    .map(|(d, _, _)| d.saturating_duration_since(Instant::now()))
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if interrupted(&e) {
                    continue;
                }
                return Err(step("wait for events", e));
            }
            for ev in events.iter() {
                match ev.token() {
                    WAKER => return Ok(()),
                    LISTENER => self.accept(),
                    Token(t) => {
                        let slot = (t - FIRST) / 2;
                        if Token(t) == target_token(slot) && self.is_connecting(slot) {
                            self.check_connect(slot);
                        } else {
                            self.service(slot);
                        }
                    }
                }
            }
            if self.accept_again {
                self.accept();
            }
            for slot in std::mem::take(&mut self.again) {
                self.service(slot);
            }
            self.expire_connects();
        }
    }

    fn accept(&mut self) {
        self.accept_again = false;
        for _ in 0..TURN {
            match self.listener.accept() {
                Ok((client, peer)) => {
                    if self.conns.len() >= self.limits.connections {
                        self.refused += 1;
                        tracing::debug!(%peer, refused = self.refused,
                            limit = self.limits.connections,
                            "proxy full: connection closed");
                        continue;
                    }
                    self.open(client, peer);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if interrupted(&e) || e.kind() == io::ErrorKind::ConnectionAborted => {
                    continue
                }
                Err(e) => {
                    // Out of descriptors, typically: what waits is retried with the
                    // next connection's wakeup.
                    tracing::warn!(listen = ?self.listener.local_addr().ok(), error = %e,
                        "proxy cannot accept");
                    return;
                }
            }
        }
        self.accept_again = true;
    }

    fn open(&mut self, mut client: TcpStream, peer: SocketAddr) {
        tune(&client);
        let mut target = match TcpStream::connect(self.target) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(%peer, target = %self.target, error = %e,
                    "cannot connect to the target; client closed");
                return;
            }
        };
        let slot = self.conns.next_slot();
        let reg = self.poll.registry();
        let both = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = reg
            .register(&mut client, client_token(slot), both)
            .and_then(|()| reg.register(&mut target, target_token(slot), both))
        {
            tracing::warn!(%peer, error = %e, "proxy cannot watch a connection");
            let _ = reg.deregister(&mut client);
            return;
        }
        let (slot, gen) = self.conns.insert(Conn {
            client,
            target,
            peer,
            relay: None,
        });
        self.connecting
            .push_back((Instant::now() + self.limits.connect_timeout, slot, gen));
    }

    fn is_connecting(&mut self, slot: usize) -> bool {
        self.conns.get_mut(slot).is_some_and(|c| c.relay.is_none())
    }

    fn check_connect(&mut self, slot: usize) {
        let Some(c) = self.conns.get_mut(slot) else {
            return;
        };
        let failed = match c.target.take_error() {
            Ok(Some(e)) | Err(e) => Some(e),
            Ok(None) => match c.target.peer_addr() {
                Ok(_) => None,
                Err(e)
                    if e.kind() == io::ErrorKind::NotConnected
                        || e.raw_os_error() == Some(libc::EINPROGRESS) =>
                {
                    return; // still connecting
                }
                Err(e) => Some(e),
            },
        };
        if let Some(e) = failed {
            tracing::debug!(peer = %c.peer, target = %self.target, error = %e,
                "cannot connect to the target; client closed");
            self.close(slot, false);
            return;
        }
        tune(&c.target);
        c.relay = Some((Half::new(), Half::new()));
        // Edge-triggered: what the client sent meanwhile raises no new event.
        self.service(slot);
    }

    /// Relay what can be relayed now, both ways.
    fn service(&mut self, slot: usize) {
        let Some(c) = self.conns.get_mut(slot) else {
            return;
        };
        let Some((up, down)) = c.relay.as_mut() else {
            return;
        };
        let pumped = up
            .pump(&mut c.client, &mut c.target)
            .and_then(|a| Ok(down.pump(&mut c.target, &mut c.client)? | a));
        match pumped {
            Ok(_) if up.shut && down.shut => self.close(slot, false),
            Ok(true) => self.again.push(slot),
            Ok(false) => {}
            Err(e) => {
                tracing::debug!(peer = %c.peer, target = %self.target, error = %e,
                    "relay failed; both sides reset");
                self.close(slot, true);
            }
        }
    }

    fn close(&mut self, slot: usize, with_reset: bool) {
        let Some(mut c) = self.conns.remove(slot) else {
            return;
        };
        if with_reset {
            reset(&c.client);
            reset(&c.target);
        }
        let _ = self.poll.registry().deregister(&mut c.client);
        let _ = self.poll.registry().deregister(&mut c.target);
    }

    fn expire_connects(&mut self) {
        let now = Instant::now();
        while let Some(&(deadline, slot, gen)) = self.connecting.front() {
            if deadline > now {
                break;
            }
            self.connecting.pop_front();
            let Some(c) = self.conns.get_gen(slot, gen) else {
                continue;
            };
            if c.relay.is_none() {
                tracing::debug!(peer = %c.peer, target = %self.target,
                    "connecting to the target timed out; client closed");
                self.close(slot, false);
            }
        }
    }
}

// ---- UDP ----

struct Flow {
    client: SocketAddr,
    socket: UdpSocket,
    last: Instant,
}

fn flow_token(slot: usize) -> Token {
    Token(FIRST + slot)
}

struct UdpRelay {
    poll: Poll,
    listener: UdpSocket,
    target: SocketAddr,
    limits: Limits,
    flows: Slab<Flow>,
    by_client: HashMap<SocketAddr, usize>,
    buf: Box<[u8]>,
    /// Sockets whose turn ran out, to continue after this round's events.
    again: Vec<Token>,
    next_sweep: Option<Instant>,
    /// Datagrams of new clients dropped because the proxy was full.
    refused: u64,
}

impl UdpRelay {
    fn new(poll: Poll, listener: UdpSocket, target: SocketAddr, limits: Limits) -> Self {
        UdpRelay {
            poll,
            listener,
            target,
            limits,
            flows: Slab::new(),
            by_client: HashMap::new(),
            buf: vec![0; DATAGRAM].into_boxed_slice(),
            again: Vec::new(),
            next_sweep: None,
            refused: 0,
        }
    }

    fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(256);
        loop {
            let timeout = if !self.again.is_empty() {
                Some(Duration::ZERO)
            } else {
                self.next_sweep
                    .map(|t| t.saturating_duration_since(Instant::now()))
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if interrupted(&e) {
                    continue;
                }
                return Err(step("wait for events", e));
            }
            let mut ready: Vec<Token> = std::mem::take(&mut self.again);
            for ev in events.iter() {
                if ev.token() == WAKER {
                    return Ok(());
                }
                ready.push(ev.token());
            }
            for t in ready {
                match t {
                    LISTENER => self.relay_clients(),
                    Token(t) => self.relay_replies(t - FIRST),
                }
            }
            if self.next_sweep.is_some_and(|t| t <= Instant::now()) {
                self.sweep();
            }
        }
    }

    /// Datagrams from clients, each to its flow's socket.
    fn relay_clients(&mut self) {
        let now = Instant::now();
        let mut last_ok = false;
        for _ in 0..TURN {
            let (n, client) = match self.listener.recv_from(&mut self.buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    if !interrupted(&e) {
                        tracing::debug!(error = %e, "proxy receive failed");
                    }
                    last_ok = false;
                    continue;
                }
            };
            last_ok = true;
            let slot = match self.by_client.get(&client) {
                Some(&s) => s,
                None => match self.open_flow(client, now) {
                    Some(s) => s,
                    None => continue,
                },
            };
            let Some(flow) = self.flows.get_mut(slot) else {
                continue;
            };
            flow.last = now;
            let data = &self.buf[..n];
            let mut sent = flow.socket.send(data);
            if matches!(&sent, Err(e) if e.kind() == io::ErrorKind::ConnectionRefused) {
                // The error was an earlier datagram's (ICMP port unreachable).
                sent = flow.socket.send(data);
            }
            if let Err(e) = sent {
                tracing::trace!(%client, target = %self.target, error = %e, "datagram dropped");
            }
        }
        // Only a turn used up by datagrams continues at once: a persistent error waits
        // for the next wakeup instead of spinning.
        if last_ok {
            self.again.push(LISTENER);
        }
    }

    fn open_flow(&mut self, client: SocketAddr, now: Instant) -> Option<usize> {
        if self.flows.len() >= self.limits.flows {
            self.refused += 1;
            tracing::debug!(%client, refused = self.refused, limit = self.limits.flows,
                "proxy full: datagram from a new client dropped");
            return None;
        }
        let any: std::net::IpAddr = if self.target.is_ipv4() {
            Ipv4Addr::UNSPECIFIED.into()
        } else {
            std::net::Ipv6Addr::UNSPECIFIED.into()
        };
        let opened = UdpSocket::bind(SocketAddr::new(any, 0)).and_then(|s| {
            s.connect(self.target)?;
            Ok(s)
        });
        let mut socket = match opened {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(%client, target = %self.target, error = %e,
                    "cannot open a flow to the target");
                return None;
            }
        };
        let slot = self.flows.next_slot();
        if let Err(e) =
            self.poll
                .registry()
                .register(&mut socket, flow_token(slot), Interest::READABLE)
        {
            tracing::warn!(%client, error = %e, "proxy cannot watch a flow");
            return None;
        }
        let (slot, _) = self.flows.insert(Flow {
            client,
            socket,
            last: now,
        });
        self.by_client.insert(client, slot);
        if self.next_sweep.is_none() {
            self.next_sweep = Some(now + self.limits.udp_idle);
        }
        Some(slot)
    }

    /// Replies from the target, back to the flow's client from the listening socket.
    fn relay_replies(&mut self, slot: usize) {
        let Some(flow) = self.flows.get_mut(slot) else {
            return;
        };
        let mut last_ok = false;
        let mut broken = None;
        for _ in 0..TURN {
            match flow.socket.recv(&mut self.buf) {
                Ok(n) => {
                    last_ok = true;
                    flow.last = Instant::now();
                    if let Err(e) = self.listener.send_to(&self.buf[..n], flow.client) {
                        tracing::trace!(client = %flow.client, error = %e, "reply dropped");
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                // Nothing listening at the target (yet): keep the flow, as docker-proxy.
                Err(e) if interrupted(&e) || e.kind() == io::ErrorKind::ConnectionRefused => {
                    last_ok = false;
                }
                Err(e) => {
                    broken = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = broken {
            tracing::debug!(client = %flow.client, target = %self.target, error = %e,
                "flow failed; closed");
            self.close_flow(slot);
        } else if last_ok {
            self.again.push(flow_token(slot));
        }
    }

    fn close_flow(&mut self, slot: usize) {
        if let Some(mut flow) = self.flows.remove(slot) {
            self.by_client.remove(&flow.client);
            let _ = self.poll.registry().deregister(&mut flow.socket);
        }
    }

    /// Close idle flows; the next sweep is when the next one would go idle, at most
    /// once per [`SWEEP`].
    fn sweep(&mut self) {
        let now = Instant::now();
        let idle = self.limits.udp_idle;
        let mut expired = Vec::new();
        let mut next: Option<Instant> = None;
        for (slot, flow) in self.flows.iter() {
            let due = flow.last + idle;
            if due <= now {
                expired.push(slot);
            } else {
                next = Some(next.map_or(due, |n| n.min(due)));
            }
        }
        for slot in expired {
            if let Some(flow) = self.flows.get_mut(slot) {
                tracing::debug!(client = %flow.client, "idle flow closed");
            }
            self.close_flow(slot);
        }
        self.next_sweep = next.map(|t| t.max(now + SWEEP.min(idle)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddrV4;
    use std::net::{TcpListener as StdListener, TcpStream as StdStream, UdpSocket as StdUdp};
    use std::thread;

    const WAIT: Duration = Duration::from_secs(10);

    fn v4(a: SocketAddr) -> SocketAddrV4 {
        match a {
            SocketAddr::V4(a) => a,
            SocketAddr::V6(_) => panic!("not IPv4: {a}"),
        }
    }

    fn loopback() -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
    }

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 + (i >> 9)) as u8).collect()
    }

    /// A TCP server: echoes what it reads until the client's FIN, then sends "bye" and
    /// closes. Serves `conns` connections, one at a time.
    fn echo_then_bye(conns: usize) -> SocketAddrV4 {
        let l = StdListener::bind(loopback()).unwrap();
        let addr = v4(l.local_addr().unwrap());
        thread::spawn(move || {
            for _ in 0..conns {
                let (mut s, _) = l.accept().unwrap();
                s.set_read_timeout(Some(WAIT)).unwrap();
                let mut buf = [0u8; 16 * 1024];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => s.write_all(&buf[..n]).unwrap(),
                        Err(e) => panic!("server read: {e}"),
                    }
                }
                s.write_all(b"bye").unwrap();
            }
        });
        addr
    }

    /// Send `data` from a second thread, shut down writing, read everything back.
    fn round_trip(proxy: SocketAddr, data: &[u8]) -> Vec<u8> {
        let mut s = StdStream::connect(proxy).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut w = s.try_clone().unwrap();
        let out = data.to_vec();
        let writer = thread::spawn(move || {
            w.write_all(&out).unwrap();
            w.shutdown(Shutdown::Write).unwrap();
        });
        let mut got = Vec::new();
        s.read_to_end(&mut got)
            .expect("the reply (a timeout means the FIN was not passed on)");
        writer.join().unwrap();
        got
    }

    #[test]
    fn tcp_relays_a_mebibyte_both_ways_with_half_close() {
        let target = echo_then_bye(1);
        let p = Proxy::start(Proto::Tcp, loopback(), target.into()).unwrap();
        let data = pattern(1 << 20);
        let got = round_trip(p.local_addr(), &data);
        assert_eq!(got.len(), data.len() + 3, "echo and bye");
        assert!(got[..data.len()] == data[..], "echo differs");
        assert_eq!(&got[data.len()..], b"bye");
    }

    #[test]
    fn tcp_listens_on_ipv6_loopback() {
        let lo6 = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 0));
        if let Err(e) = StdListener::bind(lo6) {
            eprintln!("skipped: this machine has no ::1 ({e})");
            return;
        }
        let target = echo_then_bye(1);
        let p = Proxy::start(Proto::Tcp, lo6, target.into()).unwrap();
        assert!(p.local_addr().is_ipv6());
        assert_eq!(round_trip(p.local_addr(), b"hello"), b"hellobye");
    }

    /// What lets `[::]:P` coexist with `0.0.0.0:P`, checked before the bind (a socket
    /// bound to a specific IPv6 address is V6ONLY anyway), so nothing listens on the
    /// wildcard here.
    #[test]
    fn ipv6_wildcard_sockets_are_v6only() {
        let any6 = SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 8080));
        for proto in [Proto::Tcp, Proto::Udp] {
            match unbound_socket(proto, any6) {
                Ok(fd) => assert!(sock::getsockopt(&fd, sockopt::Ipv6V6Only).unwrap()),
                Err(e) => eprintln!("skipped {proto}: no IPv6 sockets here ({e})"),
            }
        }
        // TCP listeners reuse addresses in TIME_WAIT (as Docker's), UDP sockets do not
        // (two UDP sockets with SO_REUSEADDR could share a port).
        let any4 = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 8080));
        let tcp = unbound_socket(Proto::Tcp, any4).unwrap();
        assert!(sock::getsockopt(&tcp, sockopt::ReuseAddr).unwrap());
        assert!(!sock::getsockopt(&tcp, sockopt::ReusePort).unwrap());
        let udp = unbound_socket(Proto::Udp, any4).unwrap();
        assert!(!sock::getsockopt(&udp, sockopt::ReuseAddr).unwrap());
    }

    #[test]
    fn tcp_target_refusing_closes_the_client() {
        let refused = v4(StdListener::bind(loopback()).unwrap().local_addr().unwrap());
        let p = Proxy::start(Proto::Tcp, loopback(), refused.into()).unwrap();
        let mut s = StdStream::connect(p.local_addr()).unwrap();
        // Well before the connect time-out would close it anyway.
        s.set_read_timeout(Some(CONNECT_TIMEOUT / 2)).unwrap();
        let mut buf = [0u8; 16];
        match s.read(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
            other => panic!("expected the connection closed, got {other:?}"),
        }
    }

    #[test]
    fn tcp_beyond_the_limit_is_closed_at_once() {
        let target = echo_then_bye(2);
        let limits = Limits {
            connections: 1,
            ..Limits::default()
        };
        let p = Proxy::start_with(Proto::Tcp, loopback(), target.into(), limits).unwrap();
        let mut first = StdStream::connect(p.local_addr()).unwrap();
        first.set_read_timeout(Some(WAIT)).unwrap();
        first.write_all(b"a").unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(first.read(&mut buf).unwrap(), 1, "the first is relayed");
        let mut second = StdStream::connect(p.local_addr()).unwrap();
        second.set_read_timeout(Some(WAIT)).unwrap();
        match second.read(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
            other => panic!("expected the second closed, got {other:?}"),
        }
        first.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        first.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"bye");
        drop(first);
        // Its slot is free again (the proxy sees the close right after the reply).
        thread::sleep(Duration::from_millis(100));
        assert_eq!(round_trip(p.local_addr(), b"c"), b"cbye");
    }

    /// A UDP server answering each datagram with it, "@" and the source it came from.
    fn udp_echo() -> (SocketAddrV4, crossbeam_channel::Receiver<SocketAddr>) {
        let s = StdUdp::bind(loopback()).unwrap();
        let addr = v4(s.local_addr().unwrap());
        let (tx, rx) = crossbeam_channel::unbounded();
        thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while let Ok((n, from)) = s.recv_from(&mut buf) {
                let mut reply = buf[..n].to_vec();
                reply.extend_from_slice(format!("@{from}").as_bytes());
                let _ = s.send_to(&reply, from);
                if tx.send(from).is_err() {
                    return;
                }
            }
        });
        (addr, rx)
    }

    fn ask(c: &StdUdp, proxy: SocketAddr, msg: &str) -> String {
        c.send_to(msg.as_bytes(), proxy).unwrap();
        let mut buf = [0u8; 2048];
        let (n, from) = c.recv_from(&mut buf).expect("a reply through the proxy");
        assert_eq!(from, proxy, "replies come from the listening socket");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    fn udp_client() -> StdUdp {
        let c = StdUdp::bind(loopback()).unwrap();
        c.set_read_timeout(Some(WAIT)).unwrap();
        c
    }

    #[test]
    fn udp_two_clients_each_get_their_own_replies() {
        let (target, seen) = udp_echo();
        let p = Proxy::start(Proto::Udp, loopback(), target.into()).unwrap();
        let (a, b) = (udp_client(), udp_client());
        let mut sources = Vec::new();
        for round in 0..2 {
            for (name, c) in [("a", &a), ("b", &b)] {
                let msg = format!("{name}{round}");
                let reply = ask(c, p.local_addr(), &msg);
                assert!(
                    reply.starts_with(&format!("{msg}@")),
                    "{name} got {reply:?}"
                );
                sources.push(seen.recv_timeout(WAIT).unwrap());
            }
        }
        // One flow per client, kept between datagrams.
        assert_ne!(sources[0], sources[1]);
        assert_eq!(sources[0], sources[2]);
        assert_eq!(sources[1], sources[3]);
    }

    #[test]
    fn udp_idle_flows_expire() {
        let (target, seen) = udp_echo();
        let limits = Limits {
            udp_idle: Duration::from_millis(300),
            ..Limits::default()
        };
        let p = Proxy::start_with(Proto::Udp, loopback(), target.into(), limits).unwrap();
        let c = udp_client();
        ask(&c, p.local_addr(), "1");
        let first = seen.recv_timeout(WAIT).unwrap();
        ask(&c, p.local_addr(), "2");
        assert_eq!(
            seen.recv_timeout(WAIT).unwrap(),
            first,
            "flow kept while busy"
        );
        thread::sleep(Duration::from_millis(1000));
        ask(&c, p.local_addr(), "3");
        assert_ne!(
            seen.recv_timeout(WAIT).unwrap(),
            first,
            "a new flow after idling"
        );
    }

    #[test]
    fn dropping_the_proxy_frees_the_port_and_closes_connections() {
        let target = echo_then_bye(1);
        let p = Proxy::start(Proto::Tcp, loopback(), target.into()).unwrap();
        let addr = p.local_addr();
        let mut s = StdStream::connect(addr).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.write_all(b"x").unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(s.read(&mut buf).unwrap(), 1);
        drop(p);
        match s.read(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
            other => panic!("expected the relayed connection closed, got {other:?}"),
        }
        StdListener::bind(addr).expect("the TCP port is free again");

        let (target, _seen) = udp_echo();
        let p = Proxy::start(Proto::Udp, loopback(), target.into()).unwrap();
        let addr = p.local_addr();
        drop(p);
        StdUdp::bind(addr).expect("the UDP port is free again");
    }

    #[test]
    fn binding_a_port_in_use_names_the_address() {
        let target = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9);
        let taken = StdListener::bind(loopback()).unwrap();
        let addr = taken.local_addr().unwrap();
        let e = Proxy::start(Proto::Tcp, addr, target.into()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        let msg = e.to_string();
        assert!(msg.starts_with(&format!("listen on {addr}/tcp: ")), "{msg}");

        let taken = StdUdp::bind(loopback()).unwrap();
        let addr = taken.local_addr().unwrap();
        let e = Proxy::start(Proto::Udp, addr, target.into()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        assert!(
            e.to_string()
                .starts_with(&format!("listen on {addr}/udp: ")),
            "{e}"
        );
    }
}
