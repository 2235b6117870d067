//! HTTP doors into the control loop: Docker's plugin socket (HTTP/1.1 on a unix socket,
//! `/run/docker/plugins/NAME.sock`, where dockerd discovers plugins) and the metrics
//! address (`--metrics-addr`, TCP: `/metrics`, `/healthz`). hyper serves each on a
//! tokio runtime in a thread of its own; every request is handed whole to the control
//! loop, which owns the model and the engine, and answered with what the loop replies;
//! the loop is woken by an eventfd, as for the cluster agent.
//!
//! No client stalls the loop or another client: every connection is a task of its own,
//! at most [`MAX_CONNECTIONS`] at once (more are closed at once), a request's head must
//! arrive within [`HEADER_TIMEOUT`] and its body is read to at most [`MAX_BODY`] bytes
//! before the loop sees it; a reply the loop does not give in [`ANSWER_TIMEOUT`] is a
//! 503.

use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use nix::sys::eventfd::{EfdFlags, EventFd};

/// The largest request body taken (Docker's are a few KiB).
pub const MAX_BODY: usize = 1 << 20;
/// How long a request's head may take to arrive.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the control loop may take to answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 256;
/// The media type of Docker's plugin protocol.
pub const CONTENT_TYPE: &str = "application/vnd.docker.plugins.v1.2+json";

/// One request for the control loop; answer with [`Call::answer`].
pub struct Call {
    pub verb: Method,
    /// The path without its leading `/` (`NetworkDriver.Join`, `metrics`).
    pub method: String,
    pub body: Vec<u8>,
    reply: tokio::sync::oneshot::Sender<Answer>,
}

type Answer = (u16, &'static str, Vec<u8>);

impl Call {
    pub fn answer(self, status: u16, content_type: &'static str, body: Vec<u8>) {
        // The client may have gone meanwhile: nothing to tell it then.
        let _ = self.reply.send((status, content_type, body));
    }
}

/// Where a door listens.
pub enum Bind {
    Unix(PathBuf),
    Tcp(std::net::SocketAddr),
}

/// The control loop's handle on one door.
pub struct HttpDoor {
    path: Option<PathBuf>,
    calls: Receiver<Call>,
    wake: Arc<EventFd>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

enum Listener {
    Unix(std::os::unix::net::UnixListener),
    Tcp(std::net::TcpListener),
}

/// Bind a unix socket at `path` (its directory made; a stale socket replaced, a live
/// one refused).
fn bind_unix(path: &Path) -> std::io::Result<std::os::unix::net::UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("another process is serving {}", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let l = std::os::unix::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

impl HttpDoor {
    /// Bind `at` and start serving it; `what` names the door in logs.
    pub fn start(at: Bind, what: &'static str) -> std::io::Result<HttpDoor> {
        let (listener, path) = match at {
            Bind::Unix(p) => (Listener::Unix(bind_unix(&p)?), Some(p)),
            Bind::Tcp(a) => {
                let l = std::net::TcpListener::bind(a)?;
                l.set_nonblocking(true)?;
                (Listener::Tcp(l), None)
            }
        };
        let shown = match (&listener, &path) {
            (_, Some(p)) => p.display().to_string(),
            (Listener::Tcp(l), None) => l.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            _ => String::new(),
        };
        let wake = Arc::new(
            EventFd::from_value_and_flags(0, EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)
                .map_err(std::io::Error::from)?,
        );
        let (tx, calls) = crossbeam_channel::unbounded();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let out = Outbox {
            calls: tx,
            wake: wake.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(what.replace(' ', "-"))
            .spawn(move || serve(listener, out, stopped, shown, what))?;
        Ok(HttpDoor {
            path,
            calls,
            wake,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The fd that becomes readable when requests wait.
    pub fn wake_fd(&self) -> RawFd {
        self.wake.as_raw_fd()
    }

    /// Every request waiting, in order.
    pub fn drain(&self) -> Vec<Call> {
        let _ = self.wake.read();
        self.calls.try_iter().collect()
    }
}

impl Drop for HttpDoor {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(p) = &self.path {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[derive(Clone)]
struct Outbox {
    calls: Sender<Call>,
    wake: Arc<EventFd>,
}

fn serve(
    listener: Listener,
    out: Outbox,
    stopped: tokio::sync::oneshot::Receiver<()>,
    shown: String,
    what: &'static str,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(door = what, error = %e, "cannot start the runtime");
            return;
        }
    };
    rt.block_on(async move {
        let listener = match listener {
            Listener::Unix(l) => tokio::net::UnixListener::from_std(l).map(Accept::Unix),
            Listener::Tcp(l) => tokio::net::TcpListener::from_std(l).map(Accept::Tcp),
        };
        let listener = match listener {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(door = what, error = %e, "cannot serve");
                return;
            }
        };
        tracing::info!(at = %shown, "{what} ready");
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        let mut stopped = stopped;
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                conn = listener.accept() => match conn {
                    Ok(stream) => {
                        // Past the bound a connection is closed at once (dropped).
                        let Ok(slot) = slots.clone().try_acquire_owned() else {
                            continue;
                        };
                        let out = out.clone();
                        tokio::spawn(async move {
                            match stream {
                                Stream::Unix(s) => connection(s, out).await,
                                Stream::Tcp(s) => connection(s, out).await,
                            }
                            drop(slot);
                        });
                    }
                    Err(e) => {
                        tracing::warn!(door = what, error = %e, "accepting failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
    });
}

enum Accept {
    Unix(tokio::net::UnixListener),
    Tcp(tokio::net::TcpListener),
}

enum Stream {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream),
}

impl Accept {
    async fn accept(&self) -> std::io::Result<Stream> {
        match self {
            Accept::Unix(l) => l.accept().await.map(|(s, _)| Stream::Unix(s)),
            Accept::Tcp(l) => l.accept().await.map(|(s, _)| Stream::Tcp(s)),
        }
    }
}

async fn connection<S>(stream: S, out: Outbox)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let io = hyper_util::rt::TokioIo::new(stream);
    let service = hyper::service::service_fn(move |req| {
        let out = out.clone();
        async move { Ok::<_, std::convert::Infallible>(handle(req, out).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(io, service);
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "HTTP connection ended");
    }
}

/// `{"Err": msg}` with `status`.
fn error(status: StatusCode, msg: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "Err": msg }).to_string();
    reply(status.as_u16(), CONTENT_TYPE, body.into_bytes())
}

fn reply(status: u16, content_type: &str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

async fn handle(req: Request<Incoming>, out: Outbox) -> Response<Full<Bytes>> {
    let verb = req.method().clone();
    let method = req.uri().path().trim_start_matches('/').to_string();
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes().to_vec(),
        Err(e) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("cannot read the request body (at most {MAX_BODY} bytes): {e}"),
            )
        }
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let call = Call {
        verb,
        method,
        body,
        reply: tx,
    };
    if out.calls.send(call).is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "vswitchd is stopping");
    }
    let _ = out.wake.write(1);
    match tokio::time::timeout(ANSWER_TIMEOUT, rx).await {
        Ok(Ok((status, content_type, body))) => reply(status, content_type, body),
        Ok(Err(_)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "vswitchd dropped the request",
        ),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "vswitchd did not answer in time",
        ),
    }
}
