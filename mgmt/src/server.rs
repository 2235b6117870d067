//! The control socket: a mio event loop serving many clients at once, one JSON-RPC
//! request per line, bounded line length, and SIGTERM/SIGINT through a signalfd.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use mio::net::{UnixListener, UnixStream};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::controller::Controller;
use crate::error::{step, ApiError, Code, Step};
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
const SIGNALS: Token = Token(1);
const FIRST_CLIENT: usize = 2;

struct Client {
    stream: UnixStream,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    /// Close once the output is flushed (after an oversize request).
    closing: bool,
}

/// Block SIGTERM/SIGINT in this thread (and threads it spawns later) and return a
/// signalfd that reads them. Call before starting workers.
pub fn block_signals() -> Result<SignalFd> {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGTERM);
    mask.add(Signal::SIGINT);
    mask.thread_block().map_err(step("block SIGTERM/SIGINT"))?;
    Ok(
        SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(step("create signalfd"))?,
    )
}

pub struct Server {
    path: PathBuf,
    listener: UnixListener,
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
        })
    }

    /// Serve until a termination signal arrives.
    pub fn run(mut self, ctl: &mut Controller, signals: &mut SignalFd) -> Result<()> {
        let mut poll = Poll::new().map_err(step("create event loop"))?;
        poll.registry()
            .register(&mut self.listener, LISTENER, Interest::READABLE)
            .map_err(step("watch the control socket"))?;
        let sfd = signals.as_raw_fd();
        poll.registry()
            .register(&mut SourceFd(&sfd), SIGNALS, Interest::READABLE)
            .map_err(step("watch the signalfd"))?;
        let mut clients: HashMap<Token, Client> = HashMap::new();
        let mut next = FIRST_CLIENT;
        let mut events = Events::with_capacity(128);
        tracing::info!(socket = %self.path.display(), "control socket ready");
        loop {
            if let Err(e) = poll.poll(&mut events, None) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(step("wait for control socket events")(e).into());
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => loop {
                        match self.listener.accept() {
                            Ok((mut stream, _)) => {
                                let t = Token(next);
                                next += 1;
                                poll.registry()
                                    .register(&mut stream, t, Interest::READABLE)
                                    .map_err(step("watch a client"))?;
                                clients.insert(
                                    t,
                                    Client {
                                        stream,
                                        inbuf: Vec::new(),
                                        outbuf: Vec::new(),
                                        closing: false,
                                    },
                                );
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(e) => {
                                tracing::warn!(error = %e, "accept failed");
                                break;
                            }
                        }
                    },
                    SIGNALS => {
                        if let Ok(Some(info)) = signals.read_signal() {
                            tracing::info!(signal = info.ssi_signo, "shutting down");
                            return Ok(());
                        }
                    }
                    t => {
                        let Some(c) = clients.get_mut(&t) else {
                            continue;
                        };
                        let mut keep = true;
                        if ev.is_readable() {
                            keep = read_requests(c, ctl);
                        }
                        if keep {
                            keep = flush(c);
                        }
                        if keep {
                            let interest = if c.outbuf.is_empty() {
                                Interest::READABLE
                            } else {
                                Interest::READABLE | Interest::WRITABLE
                            };
                            poll.registry()
                                .reregister(&mut c.stream, t, interest)
                                .map_err(step("watch a client"))?;
                        } else if let Some(mut c) = clients.remove(&t) {
                            let _ = poll.registry().deregister(&mut c.stream);
                        }
                    }
                }
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Read what is available and answer every complete line. False: close the client.
fn read_requests(c: &mut Client, ctl: &mut Controller) -> bool {
    let mut buf = [0u8; 16 * 1024];
    let mut eof = false;
    loop {
        match c.stream.read(&mut buf) {
            Ok(0) => {
                eof = true;
                break;
            }
            Ok(n) => c.inbuf.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
        if c.inbuf.len() > rpc::MAX_REQUEST && !c.inbuf[..].contains(&b'\n') {
            break;
        }
    }
    while let Some(pos) = c.inbuf.iter().position(|b| *b == b'\n') {
        let line: Vec<u8> = c.inbuf.drain(..=pos).collect();
        let line = &line[..line.len() - 1];
        if line.len() > rpc::MAX_REQUEST {
            respond_too_large(c);
            c.closing = true;
            c.inbuf.clear();
            return true;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if let Some(reply) = rpc::handle_line(ctl, line) {
            c.outbuf.extend_from_slice(reply.to_string().as_bytes());
            c.outbuf.push(b'\n');
        }
    }
    if c.inbuf.len() > rpc::MAX_REQUEST {
        respond_too_large(c);
        c.closing = true;
        c.inbuf.clear();
    }
    if eof {
        // Answer a final request that had no newline, then close after flushing.
        if !c.inbuf.is_empty() && !c.closing {
            let line = std::mem::take(&mut c.inbuf);
            if let Some(reply) = rpc::handle_line(ctl, &line) {
                c.outbuf.extend_from_slice(reply.to_string().as_bytes());
                c.outbuf.push(b'\n');
            }
        }
        c.closing = true;
    }
    true
}

fn respond_too_large(c: &mut Client) {
    let e = ApiError::new(
        Code::TooLarge,
        format!(
            "request too large: the limit is {} bytes per line",
            rpc::MAX_REQUEST
        ),
    );
    c.outbuf.extend_from_slice(
        rpc::error_reply(serde_json::Value::Null, &e)
            .to_string()
            .as_bytes(),
    );
    c.outbuf.push(b'\n');
}

/// Write pending output. False: the client is done (error, or closing and flushed).
fn flush(c: &mut Client) -> bool {
    while !c.outbuf.is_empty() {
        match c.stream.write(&c.outbuf) {
            Ok(0) => return false,
            Ok(n) => {
                c.outbuf.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
    !c.closing
}
