//! The Docker plugin socket: HTTP/1.1 on a unix socket (`/run/docker/plugins/NAME.sock`,
//! where dockerd discovers plugins), served by hyper on a tokio runtime in a thread of
//! its own. Each request (`POST /Plugin.Activate`, `/NetworkDriver.Join`, ...) is
//! handed whole to the control loop, which owns the model, and answered with what the
//! loop replies; the loop is woken by an eventfd, as for the cluster agent.
//!
//! No client stalls the loop or another client: every connection is a task of its own,
//! a request's head must arrive within [`HEADER_TIMEOUT`] and its body is read to at
//! most [`MAX_BODY`] bytes before the loop sees it; a reply the loop does not give in
//! [`ANSWER_TIMEOUT`] is a 503.

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
/// The media type of Docker's plugin protocol.
pub const CONTENT_TYPE: &str = "application/vnd.docker.plugins.v1.2+json";

/// One request for the control loop: its path without the leading `/` (the method,
/// `NetworkDriver.Join`) and body; answer with [`Call::answer`].
pub struct Call {
    pub method: String,
    pub body: Vec<u8>,
    reply: tokio::sync::oneshot::Sender<(u16, Vec<u8>)>,
}

impl Call {
    pub fn answer(self, status: u16, body: Vec<u8>) {
        // The client may have gone meanwhile: nothing to tell it then.
        let _ = self.reply.send((status, body));
    }
}

/// The control loop's handle on the plugin socket.
pub struct PluginSocket {
    path: PathBuf,
    calls: Receiver<Call>,
    wake: Arc<EventFd>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PluginSocket {
    /// Bind `path` (its directory made; a stale socket replaced, a live one refused)
    /// and start serving it.
    pub fn start(path: &Path) -> std::io::Result<PluginSocket> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        if path.exists() {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    format!(
                        "another plugin is serving {}; stop it or pass another --docker-plugin",
                        path.display()
                    ),
                ));
            }
            std::fs::remove_file(path)?;
        }
        let std_listener = std::os::unix::net::UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
        std_listener.set_nonblocking(true)?;
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
        let shown = path.display().to_string();
        let thread = std::thread::Builder::new()
            .name("docker-plugin".into())
            .spawn(move || serve(std_listener, out, stopped, shown))?;
        Ok(PluginSocket {
            path: path.to_path_buf(),
            calls,
            wake,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
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

impl Drop for PluginSocket {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

#[derive(Clone)]
struct Outbox {
    calls: Sender<Call>,
    wake: Arc<EventFd>,
}

fn serve(
    listener: std::os::unix::net::UnixListener,
    out: Outbox,
    stopped: tokio::sync::oneshot::Receiver<()>,
    shown: String,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the Docker plugin socket's runtime");
            return;
        }
    };
    rt.block_on(async move {
        let listener = match tokio::net::UnixListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "cannot serve the Docker plugin socket");
                return;
            }
        };
        tracing::info!(socket = %shown, "Docker plugin socket ready");
        let mut stopped = stopped;
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                conn = listener.accept() => match conn {
                    Ok((stream, _)) => {
                        let out = out.clone();
                        tokio::spawn(connection(stream, out));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting on the Docker plugin socket failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
    });
}

async fn connection(stream: tokio::net::UnixStream, out: Outbox) {
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
        tracing::debug!(error = %e, "Docker plugin connection ended");
    }
}

/// `{"Err": msg}` with `status`.
fn error(status: StatusCode, msg: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "Err": msg }).to_string();
    reply(status.as_u16(), body.into_bytes())
}

fn reply(status: u16, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = hyper::header::HeaderValue::from_str(CONTENT_TYPE) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

async fn handle(req: Request<Incoming>, out: Outbox) -> Response<Full<Bytes>> {
    if req.method() != Method::POST {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "the plugin protocol is POST only",
        );
    }
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
        method,
        body,
        reply: tx,
    };
    if out.calls.send(call).is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "vswitchd is stopping");
    }
    let _ = out.wake.write(1);
    match tokio::time::timeout(ANSWER_TIMEOUT, rx).await {
        Ok(Ok((status, body))) => reply(status, body),
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
