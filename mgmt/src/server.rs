//! The control socket: a mio event loop serving many clients at once, one JSON-RPC
//! request per line, bounded line length, and SIGTERM/SIGINT through a signalfd.
//!
//! No client can take the loop or the daemon's memory for itself: each gets a turn of
//! at most [`READ_PER_TURN`] bytes read and [`Limits::requests_per_turn`] requests
//! answered (a client with more waiting is served again after the others), its replies
//! waiting to be read are capped (past [`Limits::max_output`] its requests are not
//! read), and a client that leaves a line unfinished or its replies unread too long is
//! dropped, as are connections beyond [`Limits::max_clients`]. Failures to accept or to
//! wait for events are logged and waited out, never the end of the daemon.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mio::net::{UnixListener, UnixStream};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use serde_json::Value;

use crate::controller::Controller;
use crate::error::{step, ApiError, Code, Step};
use crate::framing::{LineBuffer, TooLong};
use crate::rpc;

/// What binding or serving the control socket fails with.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("another vswitchd is listening on {}; stop it or pass another --socket", .0.display())]
    InUse(PathBuf),
    /// The socket, its directory or the event loop; the step says which.
    #[error(transparent)]
    Io(#[from] Step<io::Error>),
    /// Blocking or reading the termination signals.
    #[error(transparent)]
    Signals(#[from] Step<nix::Error>),
}

type Result<T, E = ServerError> = std::result::Result<T, E>;

const LISTENER: Token = Token(0);
const STOP: Token = Token(1);
const NEWS: Token = Token(2);
const FIRST_CLIENT: usize = 3;

/// What the loop serves: request lines, and news from elsewhere (the cluster store's
/// agent, the Docker plugin socket) signalled on fds, applied between turns.
trait Handler {
    /// Answer `line` from the client `who` (its credentials, for the log).
    fn line(&mut self, line: &[u8], who: &str) -> Option<Value>;
    fn news_fds(&self) -> Vec<RawFd> {
        Vec::new()
    }
    fn news(&mut self) {}
    /// SIGHUP: re-read what can change live.
    fn reload(&mut self) {}
}

impl<F: FnMut(&[u8]) -> Option<Value>> Handler for F {
    fn line(&mut self, line: &[u8], _who: &str) -> Option<Value> {
        self(line)
    }
}

struct Ctl<'a>(&'a mut Controller);

impl Handler for Ctl<'_> {
    fn line(&mut self, line: &[u8], who: &str) -> Option<Value> {
        rpc::handle_line(self.0, line, who)
    }
    fn news_fds(&self) -> Vec<RawFd> {
        [self.0.cluster_fd(), self.0.plugin_fd(), self.0.metrics_fd()]
            .into_iter()
            .flatten()
            .collect()
    }
    fn news(&mut self) {
        self.0.cluster_events();
        self.0.plugin_calls();
        self.0.metrics_calls();
    }
    fn reload(&mut self) {
        self.0.reload();
    }
}

/// Clients served at once; a connection beyond them is accepted and closed at once.
pub const MAX_CLIENTS: usize = 256;
/// Replies waiting for a client to read them, past which its requests are not read.
pub const MAX_OUTPUT: usize = 4 << 20;
/// How long a line may take to arrive once begun.
pub const LINE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may leave its replies unread (or stay over [`MAX_OUTPUT`]).
pub const OUTPUT_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests answered per client per turn of the loop (blank lines, skipped, are not
/// counted: they cost no more than the bytes read).
pub const REQUESTS_PER_TURN: usize = 16;
/// Bytes read from one client per turn of the loop.
pub const READ_PER_TURN: usize = 64 * 1024;
/// Connections taken from the listener per turn of the loop.
const ACCEPTS_PER_TURN: usize = 64;
/// The pause after accepting failed other than for a connection gone (EMFILE, ENFILE,
/// ENOBUFS, ENOMEM: the connection stays queued and would fail again at once), or
/// after waiting for events failed.
const BACKOFF: Duration = Duration::from_millis(100);
/// At most one warning of each kind per this much time (a flood of refused
/// connections, EMFILE) says how many it stands for.
const WARN_EVERY: Duration = Duration::from_secs(1);

/// The bounds on what clients can make the daemon do: the constants above unless a
/// test lowers them ([`Server::with_limits`]).
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_clients: usize,
    pub max_output: usize,
    pub line_timeout: Duration,
    pub output_timeout: Duration,
    pub requests_per_turn: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_clients: MAX_CLIENTS,
            max_output: MAX_OUTPUT,
            line_timeout: LINE_TIMEOUT,
            output_timeout: OUTPUT_TIMEOUT,
            requests_per_turn: REQUESTS_PER_TURN,
        }
    }
}

/// Block SIGTERM/SIGINT (stop) and SIGHUP (reload) in this thread (and threads it
/// spawns later) and return a signalfd that reads them. Call before starting workers.
pub fn block_signals() -> Result<SignalFd> {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGTERM);
    mask.add(Signal::SIGINT);
    mask.add(Signal::SIGHUP);
    mask.thread_block()
        .map_err(step("block SIGTERM/SIGINT/SIGHUP"))?;
    Ok(
        SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(step("create signalfd"))?,
    )
}

/// What an fd the loop watches says: stop (a termination signal; in tests, a byte on
/// a socket), reload the configuration (SIGHUP), or nothing.
#[derive(Debug, PartialEq, Eq)]
enum Said {
    Stop,
    Reload,
    Nothing,
}

/// What ends the loop (or reloads): an fd that becomes readable, and what it says.
trait Stop {
    fn fd(&self) -> RawFd;
    fn requested(&mut self) -> Said;
}

impl Stop for SignalFd {
    fn fd(&self) -> RawFd {
        self.as_raw_fd()
    }

    fn requested(&mut self) -> Said {
        match self.read_signal() {
            Ok(Some(info)) if info.ssi_signo == Signal::SIGHUP as u32 => Said::Reload,
            Ok(Some(info)) => {
                tracing::info!(signal = info.ssi_signo, "shutting down");
                Said::Stop
            }
            _ => Said::Nothing,
        }
    }
}

pub struct Server {
    path: PathBuf,
    listener: UnixListener,
    limits: Limits,
    /// Fault injection: this many waits for events fail (EBADF) before the real ones.
    #[cfg(test)]
    failing_waits: u32,
}

impl Server {
    /// Bind the socket: directory 0755, socket 0660 owned by root. A stale socket file
    /// (nobody listening) is replaced; a live one means another daemon: refuse.
    pub fn bind(path: &Path) -> Result<Server> {
        if let Some(dir) = path.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .map_err(step(format!("create socket directory {}", dir.display())))?;
        }
        if path.exists() {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(ServerError::InUse(path.to_path_buf()));
            }
            fs::remove_file(path)
                .map_err(step(format!("remove stale socket {}", path.display())))?;
        }
        let listener = UnixListener::bind(path)
            .map_err(step(format!("bind control socket {}", path.display())))?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o660))
            .map_err(step(format!("chmod {}", path.display())))?;
        Ok(Server {
            path: path.to_path_buf(),
            listener,
            limits: Limits::default(),
            #[cfg(test)]
            failing_waits: 0,
        })
    }

    /// The same server with other bounds (tests lower the time-outs and caps).
    pub fn with_limits(mut self, limits: Limits) -> Server {
        self.limits = limits;
        self
    }

    /// Serve until a termination signal arrives.
    pub fn run(self, ctl: &mut Controller, signals: &mut SignalFd) -> Result<()> {
        self.serve(Ctl(ctl), signals)
    }

    /// Serve, answering each request line with `handle`, until `stop` says so. Only
    /// setting the loop up can fail: what goes wrong after that is logged and outlived.
    fn serve<H, S>(mut self, mut handle: H, stop: &mut S) -> Result<()>
    where
        H: Handler,
        S: Stop,
    {
        let mut poll = Poll::new().map_err(step("create event loop"))?;
        poll.registry()
            .register(&mut self.listener, LISTENER, Interest::READABLE)
            .map_err(step("watch the control socket"))?;
        poll.registry()
            .register(&mut SourceFd(&stop.fd()), STOP, Interest::READABLE)
            .map_err(step("watch the signalfd"))?;
        let news = handle.news_fds();
        for fd in &news {
            poll.registry()
                .register(&mut SourceFd(fd), NEWS, Interest::READABLE)
                .map_err(step("watch the cluster agent's or plugin socket's eventfd"))?;
        }
        if !news.is_empty() {
            // What arrived before the loop started.
            handle.news();
        }
        let mut clients: HashMap<Token, Client> = HashMap::new();
        let mut accept = Accept {
            next: FIRST_CLIENT,
            pending: false,
            retry_at: None,
            refused: Warn::default(),
            failed: Warn::default(),
        };
        let mut wait_failed = Warn::default();
        // Clients with work left after their turn (queued once: `Client::queued`).
        let mut ready: Vec<Token> = Vec::new();
        let mut turn: Vec<Token> = Vec::new();
        let mut deadline: Option<Instant> = None;
        let mut events = Events::with_capacity(128);
        tracing::info!(socket = %self.path.display(), "control socket ready");
        loop {
            let now = Instant::now();
            let accept_at = accept.pending.then(|| accept.retry_at.unwrap_or(now));
            let timeout = if ready.is_empty() {
                earliest(deadline, accept_at).map(|t| t.saturating_duration_since(now))
            } else {
                Some(Duration::ZERO)
            };
            if let Err(e) = self.wait(&mut poll, &mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    if let Some(more) = wait_failed.due(now) {
                        tracing::warn!(
                            error = %e,
                            repeated = more,
                            "waiting for control socket events failed; retrying"
                        );
                    }
                    std::thread::sleep(BACKOFF);
                }
                continue;
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => accept.pending = true,
                    STOP => match stop.requested() {
                        Said::Stop => return Ok(()),
                        Said::Reload => handle.reload(),
                        Said::Nothing => {}
                    },
                    NEWS => handle.news(),
                    t => {
                        if let Some(c) = clients.get_mut(&t) {
                            if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                                c.readable = true;
                            }
                            if !c.queued {
                                c.queued = true;
                                ready.push(t);
                            }
                        }
                    }
                }
            }
            let now = Instant::now();
            if accept.pending && accept.retry_at.is_none_or(|t| t <= now) {
                accept.run(
                    &self.listener,
                    poll.registry(),
                    &mut clients,
                    &self.limits,
                    now,
                );
            }
            std::mem::swap(&mut ready, &mut turn);
            for t in turn.drain(..) {
                let Some(c) = clients.get_mut(&t) else {
                    continue;
                };
                c.queued = false;
                match c.turn(&mut handle, &self.limits, Instant::now()) {
                    Next::More => {
                        c.queued = true;
                        ready.push(t);
                    }
                    Next::Wait => {}
                    Next::Close => {
                        if let Some(mut c) = clients.remove(&t) {
                            let _ = poll.registry().deregister(&mut c.stream);
                        }
                    }
                }
            }
            let now = Instant::now();
            deadline = None;
            clients.retain(|_, c| match c.deadline(&self.limits) {
                Some((at, why)) if at <= now => {
                    tracing::warn!("control client dropped: {why}");
                    let _ = poll.registry().deregister(&mut c.stream);
                    false
                }
                Some((at, _)) => {
                    deadline = earliest(deadline, Some(at));
                    true
                }
                None => true,
            });
        }
    }

    fn wait(
        &mut self,
        poll: &mut Poll,
        events: &mut Events,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        #[cfg(test)]
        if self.failing_waits > 0 {
            self.failing_waits -= 1;
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
        poll.poll(events, timeout)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A warning that may repeat: logged at most once per [`WARN_EVERY`], saying how many
/// times it happened since it was last logged.
#[derive(Default)]
struct Warn {
    last: Option<Instant>,
    suppressed: u64,
}

impl Warn {
    /// Some(times suppressed since the last one) when this one is to be logged.
    fn due(&mut self, now: Instant) -> Option<u64> {
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < WARN_EVERY)
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// The listener's side of the loop.
struct Accept {
    next: usize,
    /// The listener may have connections queued (edge-triggered: until WouldBlock).
    pending: bool,
    /// Accepting failed for want of resources: not before this.
    retry_at: Option<Instant>,
    refused: Warn,
    failed: Warn,
}

impl Accept {
    fn run(
        &mut self,
        listener: &UnixListener,
        registry: &Registry,
        clients: &mut HashMap<Token, Client>,
        limits: &Limits,
        now: Instant,
    ) {
        self.retry_at = None;
        for _ in 0..ACCEPTS_PER_TURN {
            match listener.accept() {
                Ok((stream, _)) if clients.len() >= limits.max_clients => {
                    drop(stream);
                    if let Some(more) = self.refused.due(now) {
                        tracing::warn!(
                            clients = clients.len(),
                            repeated = more,
                            "control socket: too many clients, connection refused"
                        );
                    }
                }
                Ok((mut stream, _)) => {
                    let t = Token(self.next);
                    self.next += 1;
                    // Both directions, edge-triggered, for the client's whole life: a
                    // socket with data already waiting is reported at once.
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    if let Err(e) = registry.register(&mut stream, t, interest) {
                        tracing::warn!(
                            error = %e,
                            "control socket: cannot watch a client; closed"
                        );
                        continue;
                    }
                    clients.insert(t, Client::new(stream));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.pending = false;
                    return;
                }
                // The connection went away before it was taken: take the next.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) => {}
                // EMFILE and the like: the connection stays queued; try again later.
                Err(e) => {
                    if let Some(more) = self.failed.due(now) {
                        tracing::warn!(
                            error = %e,
                            repeated = more,
                            "control socket: accept failed; retrying"
                        );
                    }
                    self.retry_at = Some(now + BACKOFF);
                    return;
                }
            }
        }
    }
}

struct Client {
    stream: UnixStream,
    /// Its credentials (`pid=N uid=N`), as the log names who changed what.
    who: String,
    lines: LineBuffer,
    /// Replies; `out[sent..]` is still to be written.
    out: Vec<u8>,
    sent: usize,
    /// The socket may hold more to read: an event said so, and no read has since
    /// found it empty.
    readable: bool,
    /// The client closed its end: answer what it sent, then close.
    eof: bool,
    /// Close once the output is flushed (after an oversize request, or at the end).
    closing: bool,
    /// In the loop's ready list.
    queued: bool,
    /// When the line not yet finished began to arrive.
    partial_since: Option<Instant>,
    /// While output waits: when some last went out (or it began to wait).
    out_progress: Option<Instant>,
    /// Since when the output waiting has been over the cap.
    over_cap_since: Option<Instant>,
}

/// What a client needs after its turn.
enum Next {
    /// Another turn: lines or bytes wait that its budget did not cover.
    More,
    /// Nothing until its socket says something.
    Wait,
    Close,
}

impl Client {
    fn new(stream: UnixStream) -> Client {
        use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
        let who = getsockopt(&stream, PeerCredentials)
            .map(|c| format!("pid={} uid={}", c.pid(), c.uid()))
            .unwrap_or_else(|_| "unknown".into());
        Client {
            stream,
            who,
            lines: LineBuffer::new(rpc::MAX_REQUEST),
            out: Vec::new(),
            sent: 0,
            readable: false,
            eof: false,
            closing: false,
            queued: false,
            partial_since: None,
            out_progress: None,
            over_cap_since: None,
        }
    }

    fn pending_out(&self) -> usize {
        self.out.len() - self.sent
    }

    /// One turn: write what waits, then, unless the replies are over the cap, read a
    /// bounded amount and answer a bounded number of lines.
    fn turn<H>(&mut self, handle: &mut H, limits: &Limits, now: Instant) -> Next
    where
        H: Handler,
    {
        if !self.flush(now) {
            return Next::Close;
        }
        if !self.closing && self.pending_out() <= limits.max_output {
            if !self.read(now) {
                return Next::Close;
            }
            self.answer(handle, limits);
            if self.pending_out() > 0 && self.out_progress.is_none() {
                self.out_progress = Some(now);
            }
            if !self.flush(now) {
                return Next::Close;
            }
        }
        let over = self.pending_out() > limits.max_output;
        match (over, self.over_cap_since) {
            (true, None) => self.over_cap_since = Some(now),
            (false, Some(_)) => {
                self.over_cap_since = None;
                // Its line could not come in while it was not read: the clock restarts.
                if self.partial_since.is_some() {
                    self.partial_since = Some(now);
                }
            }
            _ => {}
        }
        if self.closing {
            return if self.pending_out() == 0 {
                Next::Close
            } else {
                Next::Wait
            };
        }
        if !over && (self.lines.has_line() || self.eof || self.readable) {
            Next::More
        } else {
            Next::Wait
        }
    }

    /// Read up to [`READ_PER_TURN`] bytes, and none while a complete line waits (what
    /// is buffered stays under the line limit plus one turn's read). False: close.
    fn read(&mut self, now: Instant) -> bool {
        let mut buf = [0u8; 16 * 1024];
        let mut total = 0;
        while self.readable
            && !self.eof
            && total < READ_PER_TURN
            && !self.lines.has_line()
            && self.lines.partial() <= rpc::MAX_REQUEST
        {
            match self.stream.read(&mut buf) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    total += n;
                    let ended = self.lines.push(&buf[..n]);
                    if ended || self.partial_since.is_none() {
                        self.partial_since = (self.lines.partial() > 0).then_some(now);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.readable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        true
    }

    /// Answer up to `requests_per_turn` requests while the replies are under the cap;
    /// at the end of the stream, a last line without its newline too.
    fn answer<H>(&mut self, handle: &mut H, limits: &Limits)
    where
        H: Handler,
    {
        let mut n = 0;
        while n < limits.requests_per_turn && self.pending_out() <= limits.max_output {
            match self.lines.next_line() {
                Some(Ok(line)) => {
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    n += 1;
                    if let Some(reply) = handle.line(line, &self.who) {
                        push_reply(&mut self.out, &reply);
                    }
                }
                Some(Err(TooLong)) => {
                    respond_too_large(&mut self.out);
                    self.closing = true;
                    return;
                }
                None => {
                    if self.eof {
                        if let Some(line) = self.lines.finish() {
                            if let Some(reply) = handle.line(line, &self.who) {
                                push_reply(&mut self.out, &reply);
                            }
                        }
                        self.closing = true;
                    }
                    return;
                }
            }
        }
    }

    /// Write what waits, as far as the socket takes it. False: the client is gone.
    fn flush(&mut self, now: Instant) -> bool {
        while self.sent < self.out.len() {
            match self.stream.write(&self.out[self.sent..]) {
                Ok(0) => return false,
                Ok(n) => {
                    self.sent += n;
                    self.out_progress = Some(now);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        if self.sent == self.out.len() {
            self.out.clear();
            self.sent = 0;
            self.out_progress = None;
        } else if self.sent >= self.out.len() / 2 {
            // Written bytes go once they are half the buffer: linear in what is sent.
            self.out.drain(..self.sent);
            self.sent = 0;
        }
        true
    }

    /// When this client is to be dropped, and why.
    fn deadline(&self, limits: &Limits) -> Option<(Instant, &'static str)> {
        let at = |since: Option<Instant>, after: Duration, why| {
            since.and_then(|t| t.checked_add(after)).map(|t| (t, why))
        };
        let unread = at(
            self.out_progress,
            limits.output_timeout,
            "it reads none of its replies",
        );
        let over = at(
            self.over_cap_since,
            limits.output_timeout,
            "its unread replies stay over the cap",
        );
        // A line is waited for only while the client is read.
        let line = if self.closing || self.eof || self.over_cap_since.is_some() {
            None
        } else {
            at(
                self.partial_since,
                limits.line_timeout,
                "it left a request line unfinished",
            )
        };
        [unread, over, line]
            .into_iter()
            .flatten()
            .min_by_key(|(t, _)| *t)
    }
}

fn push_reply(out: &mut Vec<u8>, reply: &Value) {
    out.extend_from_slice(reply.to_string().as_bytes());
    out.push(b'\n');
}

fn respond_too_large(out: &mut Vec<u8>) {
    let e = ApiError::new(
        Code::TooLarge,
        format!(
            "request too large: the limit is {} bytes per line",
            rpc::MAX_REQUEST
        ),
    );
    push_reply(out, &rpc::error_reply(Value::Null, &e));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::io::{BufRead, BufReader};
    use std::os::unix::net::UnixStream as StdStream;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::thread::JoinHandle;

    /// How soon a ping must be answered whatever another client does (it takes a few
    /// ms; the loads the tests put on the loop held it for seconds).
    const PROMPT: Duration = Duration::from_millis(300);

    /// Bytes of a `big` reply's result.
    const BIG: usize = 256 * 1024;

    /// Stops the loop when the test writes to (or drops) its end.
    struct TestStop(StdStream);

    impl Stop for TestStop {
        fn fd(&self) -> RawFd {
            self.0.as_raw_fd()
        }
        fn requested(&mut self) -> Said {
            Said::Stop
        }
    }

    /// A real server on a socket in a temp dir, answering `ping`, `big` (a 256 KiB
    /// result) and `slow` (1 ms of work) in a thread of its own.
    struct TestServer {
        dir: PathBuf,
        sock: PathBuf,
        stop: Option<StdStream>,
        thread: Option<JoinHandle<Result<()>>>,
        /// Requests the handler was given.
        calls: Arc<AtomicUsize>,
    }

    fn start(tag: &str, limits: Limits) -> TestServer {
        start_failing(tag, limits, 0)
    }

    fn start_failing(tag: &str, limits: Limits, failing_waits: u32) -> TestServer {
        let dir = std::env::temp_dir().join(format!("vs-server-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let sock = dir.join("ctl.sock");
        let mut server = Server::bind(&sock).expect("bind").with_limits(limits);
        server.failing_waits = failing_waits;
        let (stop, theirs) = StdStream::pair().unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let thread = std::thread::spawn(move || {
            let handle = |line: &[u8]| {
                counted.fetch_add(1, Ordering::SeqCst);
                answer(line)
            };
            server.serve(handle, &mut TestStop(theirs))
        });
        TestServer {
            dir,
            sock,
            stop: Some(stop),
            thread: Some(thread),
            calls,
        }
    }

    fn answer(line: &[u8]) -> Option<Value> {
        let Ok(req) = serde_json::from_slice::<Value>(line) else {
            let e = ApiError::new(Code::ParseError, "parse error");
            return Some(rpc::error_reply(Value::Null, &e));
        };
        let id = req.get("id")?.clone();
        let result = match req["method"].as_str() {
            Some("big") => json!("x".repeat(BIG)),
            Some("slow") => {
                std::thread::sleep(Duration::from_millis(1));
                json!("done")
            }
            _ => json!("pong"),
        };
        Some(json!({ "jsonrpc": "2.0", "id": id, "result": result }))
    }

    impl TestServer {
        fn connect(&self) -> StdStream {
            let s = StdStream::connect(&self.sock).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s
        }

        /// Connect, ping, and return how long the answer took.
        fn ping(&self) -> Duration {
            let t = Instant::now();
            let mut s = self.connect();
            s.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":\"p\",\"method\":\"ping\"}\n")
                .unwrap();
            let reply = read_line(&mut BufReader::new(s)).expect("a reply to ping");
            assert_eq!(reply["result"], "pong", "{reply}");
            t.elapsed()
        }

        /// Stop the loop and return what `serve` returned.
        fn finish(mut self) -> Result<()> {
            self.stop.take();
            self.thread
                .take()
                .unwrap()
                .join()
                .expect("the server thread")
        }
    }

    impl Drop for TestServer {
        fn drop(&mut self) {
            self.stop.take();
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
            let _ = fs::remove_dir_all(&self.dir);
        }
    }

    fn read_line(r: &mut BufReader<StdStream>) -> Option<Value> {
        let mut line = String::new();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(serde_json::from_str(&line).expect("a JSON reply")),
        }
    }

    /// Read until the server closes; None if it does not within the read time-out.
    fn read_to_close(s: &mut StdStream) -> Option<usize> {
        let mut total = 0;
        let mut buf = [0u8; 64 * 1024];
        loop {
            match s.read(&mut buf) {
                Ok(0) => return Some(total),
                Ok(n) => total += n,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Some(total),
                Err(_) => return None,
            }
        }
    }

    #[test]
    fn server_answers_pipelined_lines_in_order_and_refuses_oversize() {
        let srv = start("order", Limits::default());
        let mut s = srv.connect();
        let mut req = String::new();
        for i in 0..200 {
            req += &format!("{{\"jsonrpc\":\"2.0\",\"id\":{i},\"method\":\"ping\"}}\n \r\n");
        }
        req += "{\"jsonrpc\":\"2.0\",\"method\":\"ping\"}\n"; // a notification
        req += "{\"jsonrpc\":\"2.0\",\"id\":\"last\",\"method\":\"ping\"}"; // no newline
        s.write_all(req.as_bytes()).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut r = BufReader::new(s);
        for i in 0..200 {
            assert_eq!(read_line(&mut r).expect("a reply")["id"], i);
        }
        assert_eq!(read_line(&mut r).expect("the last line")["id"], "last");
        assert!(read_line(&mut r).is_none(), "closed after the last reply");

        let s = srv.connect();
        let mut req = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n".to_vec();
        req.resize(req.len() + rpc::MAX_REQUEST + 1, b' ');
        let writer = {
            let mut s = s.try_clone().unwrap();
            std::thread::spawn(move || {
                let _ = s.write_all(&req);
            })
        };
        let mut r = BufReader::new(s.try_clone().unwrap());
        assert_eq!(read_line(&mut r).expect("a reply")["id"], 1);
        let e = read_line(&mut r).expect("refused");
        assert_eq!(e["error"]["code"], Code::TooLarge as i32, "{e}");
        assert!(read_line(&mut r).is_none(), "closed after refusing");
        let _ = s.shutdown(std::net::Shutdown::Both);
        writer.join().unwrap();
    }

    #[test]
    fn server_serves_others_through_a_flood_of_newlines() {
        let srv = start("newlines", Limits::default());
        let flood = srv.connect();
        let mut data = vec![b'\n'; 400_000];
        data.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":\"after\",\"method\":\"ping\"}\n");
        let writer = {
            let mut s = flood.try_clone().unwrap();
            std::thread::spawn(move || s.write_all(&data).unwrap())
        };
        // Pings while the flood is read, and once after.
        let mut slowest = Duration::ZERO;
        let mut pings = 0;
        while pings == 0 || !writer.is_finished() {
            slowest = slowest.max(srv.ping());
            pings += 1;
        }
        assert!(slowest < PROMPT, "of {pings} pings one took {slowest:?}");
        writer.join().unwrap();
        flood.shutdown(std::net::Shutdown::Write).unwrap();
        let mut r = BufReader::new(flood);
        assert_eq!(read_line(&mut r).expect("one reply")["id"], "after");
        assert!(read_line(&mut r).is_none(), "and only one");
    }

    #[test]
    fn server_serves_others_while_one_client_pipelines() {
        let srv = start("pipeline", Limits::default());
        let mut busy = srv.connect();
        let req = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"slow\"}\n".repeat(2000);
        busy.write_all(req.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        // 2000 requests of 1 ms: served all at once they would hold the loop for 2 s.
        let took = srv.ping();
        assert!(took < PROMPT, "ping took {took:?}");
        let calls = srv.calls.load(Ordering::SeqCst);
        assert!(calls < 1000, "{calls} of its requests answered first");
        let mut r = BufReader::new(busy);
        assert_eq!(
            read_line(&mut r).expect("its first reply")["result"],
            "done"
        );
    }

    #[test]
    fn server_stops_reading_a_client_over_its_output_cap_then_drops_it() {
        let limits = Limits {
            max_output: 1 << 20,
            output_timeout: Duration::from_millis(500),
            ..Limits::default()
        };
        let srv = start("output", limits);
        let mut hog = srv.connect();
        let req = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"big\"}\n".repeat(200);
        hog.write_all(req.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert!(srv.ping() < Duration::from_secs(1));
        // The cap's worth of replies, one more, and what the socket buffers took.
        let calls = srv.calls.load(Ordering::SeqCst);
        assert!(
            calls <= 16,
            "{calls} requests answered for a client that reads none"
        );
        // Past the time-out without reading a byte: dropped, the rest of its replies
        // with it (reading would have made it a client like any other).
        std::thread::sleep(Duration::from_millis(800));
        let got = read_to_close(&mut hog).expect("the server closed the client");
        assert!(
            got < 200 * BIG,
            "{got} bytes read: the client was not dropped"
        );
        assert!(srv.ping() < Duration::from_secs(1));
    }

    #[test]
    fn server_refuses_clients_beyond_the_cap() {
        let limits = Limits {
            max_clients: 3,
            ..Limits::default()
        };
        let srv = start("clients", limits);
        let mut held: Vec<BufReader<StdStream>> = Vec::new();
        for i in 0..3 {
            let mut s = srv.connect();
            s.write_all(
                format!("{{\"jsonrpc\":\"2.0\",\"id\":{i},\"method\":\"ping\"}}\n").as_bytes(),
            )
            .unwrap();
            let mut r = BufReader::new(s);
            assert_eq!(read_line(&mut r).expect("served")["id"], i);
            held.push(r);
        }
        let mut extra = srv.connect();
        let _ = extra.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"ping\"}\n");
        assert_eq!(read_to_close(&mut extra), Some(0), "refused at once");
        drop(held.pop());
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let mut s = srv.connect();
            let _ = s.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"ping\"}\n");
            if let Some(v) = read_line(&mut BufReader::new(s)) {
                assert_eq!(v["id"], 7);
                break;
            }
            assert!(Instant::now() < deadline, "a freed slot is given again");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn server_drops_a_client_that_leaves_a_line_unfinished() {
        let limits = Limits {
            line_timeout: Duration::from_millis(300),
            ..Limits::default()
        };
        let srv = start("partial", limits);
        let idle = srv.connect();
        let mut half = srv.connect();
        half.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,").unwrap();
        assert!(srv.ping() < Duration::from_secs(1));
        let t = Instant::now();
        assert_eq!(read_to_close(&mut half), Some(0), "dropped");
        let took = t.elapsed();
        assert!(took < Duration::from_secs(2), "dropped after {took:?}");
        // A client with nothing unfinished is not timed out.
        let mut idle = idle;
        idle.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}\n")
            .unwrap();
        assert_eq!(
            read_line(&mut BufReader::new(idle)).expect("served")["id"],
            2
        );
    }

    #[test]
    fn server_outlives_failed_waits() {
        let srv = start_failing("wait", Limits::default(), 3);
        assert!(srv.ping() < Duration::from_secs(2));
        srv.finish().expect("the loop ends only when stopped");
    }

    /// Accepting fails with EMFILE while the process has no descriptor left: the
    /// connection is taken once one is free. In a child process, since it exhausts
    /// the process's descriptors.
    #[test]
    fn server_outlives_accept_failures() {
        const CHILD: &str = "VS_SERVER_EMFILE_CHILD";
        if std::env::var_os(CHILD).is_none() {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "server::tests::server_outlives_accept_failures",
                    "--exact",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD, "1")
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success() && stdout.contains("emfile child: served"),
                "child: {}\n{stdout}\n{stderr}",
                out.status
            );
            return;
        }
        use nix::sys::resource::{getrlimit, setrlimit, Resource};
        use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
        let srv = start("emfile", Limits::default());
        // The loop is up (its epoll fd open) and holds no client's fd (its end of this
        // one is closed once ours reads EOF) before the descriptors run out: an fd it
        // freed later would let the accept through.
        let mut first = srv.connect();
        first
            .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"ping\"}\n")
            .unwrap();
        first.shutdown(std::net::Shutdown::Write).unwrap();
        assert!(read_to_close(&mut first).is_some_and(|n| n > 0));
        drop(first);
        let fd = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        setrlimit(Resource::RLIMIT_NOFILE, 256.min(soft), hard).unwrap();
        let null = fs::File::open("/dev/null").unwrap();
        let mut filler = Vec::new();
        while let Ok(f) = nix::unistd::dup(&null) {
            filler.push(f);
        }
        connect(fd.as_raw_fd(), &UnixAddr::new(&srv.sock).unwrap()).unwrap();
        // The server's accept fails (EMFILE) meanwhile, every 100 ms.
        std::thread::sleep(Duration::from_secs(1));
        drop(filler);
        let mut s = StdStream::from(fd);
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n")
            .unwrap();
        let reply = read_line(&mut BufReader::new(s)).expect("served once fds are free");
        assert_eq!(reply["id"], 1);
        srv.finish().expect("still serving");
        println!("emfile child: served");
    }
}
