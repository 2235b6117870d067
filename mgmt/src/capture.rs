//! Packet capture for `vswitchctl capture`: the data plane tees a port's frames into a
//! bounded channel, and a writer thread here turns them into a pcap file that tcpdump
//! and tshark read.
//!
//! The daemon runs as root and writes where a client asks, so it only ever creates a
//! new regular file: `O_CREAT|O_EXCL|O_NOFOLLOW|O_NONBLOCK` refuses, at once, anything
//! already at the path (a file it would truncate, a symlink it would follow, a FIFO
//! whose open would block the control loop, a device). Each capture is bounded in size
//! and the number running at once is bounded; a capture that ends itself is reaped
//! (its tap disarmed, its thread joined) and its outcome kept for a while, not forever.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, UNIX_EPOCH};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::DataLink;
use switch::engine::EngineError;
use switch::{CaptureTap, Captured, Engine, PortId};

use crate::api::CaptureEnd;

/// What a capture fails with.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// Something is at the path already: the daemon never truncates, follows or opens
    /// what it did not create.
    #[error(
        "capture file {} exists; the daemon writes only new files (remove it or name another)",
        .0.display()
    )]
    Exists(PathBuf),
    #[error("capture file {}: directory {} does not exist", .path.display(), .dir.display())]
    NoDirectory { path: PathBuf, dir: PathBuf },
    #[error("capture file {} is not a regular file", .0.display())]
    NotRegular(PathBuf),
    #[error("create capture file {}", .path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} captures are running, the most at once; stop one first")]
    TooMany(usize),
    /// The port has a capture already (a second tap would replace the first).
    #[error("the port is already under capture {0}")]
    Busy(u64),
    #[error("write pcap header")]
    Header(#[source] pcap_file::PcapError),
    #[error("write {}", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: pcap_file::PcapError,
    },
    #[error("flush {}", .path.display())]
    Flush {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("spawn capture writer")]
    Spawn(#[source] std::io::Error),
    #[error("capture writer panicked")]
    Panicked,
    /// The data plane did not arm the tap.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

type Result<T, E = CaptureError> = std::result::Result<T, E>;

/// Frames buffered between the worker and the writer before new ones are lost.
const TAP_DEPTH: usize = 8192;
/// Captures running (or still flushing after a stop) at once.
pub const MAX_CAPTURES: usize = 16;
/// A capture's size bound when the request names none.
pub const DEFAULT_MAX_BYTES: u64 = 256 << 20;
/// The smallest size bound a request may ask for: room for the header and a frame.
pub const MIN_MAX_BYTES: u64 = 64 << 10;
/// Captures that ended themselves, remembered for `status`/`stop` (oldest forgotten).
const FINISHED_KEPT: usize = MAX_CAPTURES;
/// How long `stop` waits for the writer to drain and flush before leaving it to finish
/// alone (the control loop must not wait on a stuck disk).
const STOP_WAIT: Duration = Duration::from_secs(2);
/// pcap's file header and per-record header.
const PCAP_HEADER: u64 = 24;
const PCAP_RECORD: u64 = 16;

/// What arms and disarms a port's tap: the engine, or a test's stand-in.
pub trait Tap {
    fn arm(&self, port: PortId, tap: Option<CaptureTap>) -> Result<(), EngineError>;
}

impl Tap for Engine {
    fn arm(&self, port: PortId, tap: Option<CaptureTap>) -> Result<(), EngineError> {
        self.capture(port, tap)
    }
}

/// When a capture ends by itself.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub count: Option<u64>,
    pub max_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            count: None,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// Shared between the control plane and a writer thread.
#[derive(Default)]
struct Progress {
    stop: AtomicBool,
    frames: AtomicU64,
    bytes: AtomicU64,
}

struct Active {
    port: PortId,
    progress: Arc<Progress>,
    thread: JoinHandle<Result<CaptureEnd>>,
}

/// A capture that is over, until `stop` collects it or newer ones push it out.
struct Finished {
    frames: u64,
    bytes: u64,
    end: Result<CaptureEnd>,
}

#[derive(Default)]
pub struct Captures {
    next: u64,
    active: HashMap<u64, Active>,
    finished: VecDeque<(u64, Finished)>,
    /// Stopped writers that had not flushed within `STOP_WAIT`.
    draining: Vec<JoinHandle<Result<CaptureEnd>>>,
}

/// Where a capture stands.
#[derive(Debug)]
pub struct Status {
    pub frames: u64,
    pub bytes: u64,
    pub done: bool,
    /// Why it ended, once `done`.
    pub reason: Option<CaptureEnd>,
    pub error: Option<String>,
}

/// What `stop` reports.
#[derive(Debug)]
pub struct Stopped {
    pub frames: u64,
    pub bytes: u64,
    pub reason: CaptureEnd,
}

/// Create `path` as a new regular file, 0600, refusing whatever is there already
/// without opening it (so a FIFO cannot block, a symlink is not followed, a file or
/// device is not truncated).
fn create_file(path: &Path) -> Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true) // O_CREAT|O_EXCL: an existing path, symlinks included, fails
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .mode(0o600)
        .open(path)
        .map_err(|source| match source.raw_os_error() {
            Some(libc::EEXIST) => CaptureError::Exists(path.to_path_buf()),
            Some(libc::ENOENT) => CaptureError::NoDirectory {
                path: path.to_path_buf(),
                dir: path.parent().unwrap_or(Path::new("/")).to_path_buf(),
            },
            _ => CaptureError::Create {
                path: path.to_path_buf(),
                source,
            },
        })?;
    // What O_EXCL created is a regular file; checked on the descriptor all the same.
    let meta = file.metadata().map_err(|source| CaptureError::Create {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.file_type().is_file() {
        return Err(CaptureError::NotRegular(path.to_path_buf()));
    }
    Ok(file)
}

/// Write frames until a limit, a stop, or the tap going away; returns why it ended.
fn write_frames(
    writer: &mut PcapWriter<BufWriter<File>>,
    rx: &Receiver<Captured>,
    p: &Progress,
    limits: Limits,
    path: &Path,
) -> Result<CaptureEnd> {
    // One frame in; None when the size bound is reached.
    let mut write = |c: Captured| -> Result<Option<()>> {
        let bytes = p.bytes.load(Ordering::Relaxed);
        let next = bytes + PCAP_RECORD + c.frame.len() as u64;
        if next > limits.max_bytes {
            return Ok(None);
        }
        let ts = c.at.duration_since(UNIX_EPOCH).unwrap_or_default();
        let pkt = PcapPacket::new(ts, c.frame.len() as u32, &c.frame);
        writer
            .write_packet(&pkt)
            .map_err(|source| CaptureError::Write {
                path: path.to_path_buf(),
                source,
            })?;
        p.bytes.store(next, Ordering::Relaxed);
        p.frames.fetch_add(1, Ordering::Relaxed);
        Ok(Some(()))
    };
    let full = |p: &Progress| {
        limits
            .count
            .is_some_and(|c| p.frames.load(Ordering::Relaxed) >= c)
    };
    loop {
        if full(p) {
            return Ok(CaptureEnd::Count);
        }
        if p.stop.load(Ordering::Relaxed) {
            // What was captured before the stop is kept; nothing after.
            for c in rx.try_iter().take(rx.len()) {
                if full(p) {
                    break;
                }
                if write(c)?.is_none() {
                    return Ok(CaptureEnd::MaxBytes);
                }
            }
            return Ok(CaptureEnd::Stopped);
        }
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(c) => {
                if write(c)?.is_none() {
                    return Ok(CaptureEnd::MaxBytes);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            // `stop` disarms the tap after setting the flag; otherwise the port is gone.
            Err(RecvTimeoutError::Disconnected) if p.stop.load(Ordering::Relaxed) => {
                return Ok(CaptureEnd::Stopped)
            }
            Err(RecvTimeoutError::Disconnected) => return Ok(CaptureEnd::PortGone),
        }
    }
}

fn joined(t: JoinHandle<Result<CaptureEnd>>) -> Result<CaptureEnd> {
    t.join().unwrap_or(Err(CaptureError::Panicked))
}

impl Captures {
    /// Start writing `port`'s frames to the new file `file`; it ends by itself at the
    /// limits.
    pub fn start(
        &mut self,
        tap: &impl Tap,
        port: PortId,
        file: &Path,
        limits: Limits,
    ) -> Result<u64> {
        self.reap(tap);
        if self.running() >= MAX_CAPTURES {
            return Err(CaptureError::TooMany(MAX_CAPTURES));
        }
        if let Some((id, _)) = self.active.iter().find(|(_, a)| a.port == port) {
            return Err(CaptureError::Busy(*id));
        }
        let out = create_file(file)?;
        let remove = |e: CaptureError| {
            // The file is ours (O_EXCL) and holds nothing worth keeping.
            let _ = std::fs::remove_file(file);
            e
        };
        let header = PcapHeader {
            datalink: DataLink::ETHERNET,
            ..Default::default()
        };
        let mut writer = PcapWriter::with_header(BufWriter::new(out), header)
            .map_err(|e| remove(CaptureError::Header(e)))?;
        let (tx, rx) = bounded::<Captured>(TAP_DEPTH);
        let progress = Arc::new(Progress::default());
        progress.bytes.store(PCAP_HEADER, Ordering::Relaxed);
        let (p, path) = (progress.clone(), file.to_path_buf());
        let thread = std::thread::Builder::new()
            .name("vs-capture".into())
            .spawn(move || {
                let end = write_frames(&mut writer, &rx, &p, limits, &path);
                // Disconnect at once: the worker stops copying frames nobody reads.
                drop(rx);
                let flushed = writer
                    .into_writer()
                    .flush()
                    .map_err(|source| CaptureError::Flush { path, source });
                end.and_then(|end| flushed.map(|()| end))
            })
            .map_err(|e| remove(CaptureError::Spawn(e)))?;
        if let Err(e) = tap.arm(port, Some(tx)) {
            // The worker may hold the tap if only the answer was lost.
            let _ = tap.arm(port, None);
            progress.stop.store(true, Ordering::Relaxed);
            self.draining.push(thread);
            return Err(remove(e.into()));
        }
        self.next += 1;
        self.active.insert(
            self.next,
            Active {
                port,
                progress,
                thread,
            },
        );
        Ok(self.next)
    }

    /// Captures holding a writer thread: the ones `MAX_CAPTURES` bounds.
    pub fn running(&self) -> usize {
        self.active.len() + self.draining.len()
    }

    /// Disarm and collect the captures that ended themselves; forget the oldest
    /// outcomes past `FINISHED_KEPT`.
    pub fn reap(&mut self, tap: &impl Tap) {
        self.draining.retain(|t| !t.is_finished());
        let over: Vec<u64> = self
            .active
            .iter()
            .filter(|(_, a)| a.thread.is_finished())
            .map(|(id, _)| *id)
            .collect();
        for id in over {
            let Some(a) = self.active.remove(&id) else {
                continue;
            };
            // The engine also undoes what it did for the capture (fast paths stepped aside).
            let _ = tap.arm(a.port, None);
            let end = joined(a.thread);
            if let Err(e) = &end {
                tracing::warn!(capture = id, error = %crate::error::chain(e), "capture failed");
            }
            self.finished.push_back((
                id,
                Finished {
                    frames: a.progress.frames.load(Ordering::Relaxed),
                    bytes: a.progress.bytes.load(Ordering::Relaxed),
                    end,
                },
            ));
        }
        while self.finished.len() > FINISHED_KEPT {
            self.finished.pop_front();
        }
    }

    pub fn status(&mut self, tap: &impl Tap, id: u64) -> Option<Status> {
        self.reap(tap);
        if let Some(a) = self.active.get(&id) {
            return Some(Status {
                frames: a.progress.frames.load(Ordering::Relaxed),
                bytes: a.progress.bytes.load(Ordering::Relaxed),
                done: false,
                reason: None,
                error: None,
            });
        }
        let (_, f) = self.finished.iter().find(|(i, _)| *i == id)?;
        Some(Status {
            frames: f.frames,
            bytes: f.bytes,
            done: true,
            reason: Some(*f.end.as_ref().unwrap_or(&CaptureEnd::Failed)),
            error: f.end.as_ref().err().map(|e| crate::error::chain(e)),
        })
    }

    /// Disarm the tap, let the writer drain and close the file (waiting at most
    /// `STOP_WAIT`), or collect a capture that ended itself.
    pub fn stop(&mut self, tap: &impl Tap, id: u64) -> Option<Result<Stopped>> {
        if let Some(i) = self.finished.iter().position(|(i, _)| *i == id) {
            let (_, f) = self.finished.remove(i)?;
            return Some(f.end.map(|reason| Stopped {
                frames: f.frames,
                bytes: f.bytes,
                reason,
            }));
        }
        let a = self.active.remove(&id)?;
        a.progress.stop.store(true, Ordering::Relaxed);
        let _ = tap.arm(a.port, None);
        let deadline = Instant::now() + STOP_WAIT;
        while !a.thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        let progress = |reason| Stopped {
            frames: a.progress.frames.load(Ordering::Relaxed),
            bytes: a.progress.bytes.load(Ordering::Relaxed),
            reason,
        };
        if !a.thread.is_finished() {
            tracing::warn!(capture = id, "capture file still flushing after the stop");
            let stopped = progress(CaptureEnd::Stopped);
            self.draining.push(a.thread);
            return Some(Ok(stopped));
        }
        let end = joined(a.thread);
        Some(end.map(progress))
    }
}

/// At shutdown: let every writer drain what it has and flush its file.
impl Drop for Captures {
    fn drop(&mut self) {
        for a in self.active.values() {
            a.progress.stop.store(true, Ordering::Relaxed);
        }
        let deadline = Instant::now() + STOP_WAIT;
        while self.active.values().any(|a| !a.thread.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::mpsc;

    /// Stands in for the engine: holds the armed taps so the test feeds them frames.
    #[derive(Default)]
    struct FakeTap {
        taps: RefCell<HashMap<PortId, CaptureTap>>,
    }

    impl Tap for FakeTap {
        fn arm(&self, port: PortId, tap: Option<CaptureTap>) -> Result<(), EngineError> {
            match tap {
                Some(t) => self.taps.borrow_mut().insert(port, t),
                None => self.taps.borrow_mut().remove(&port),
            };
            Ok(())
        }
    }

    impl FakeTap {
        fn send(&self, port: PortId, len: usize) {
            let t = self.taps.borrow().get(&port).cloned().expect("armed");
            t.send(Captured {
                at: std::time::SystemTime::now(),
                frame: vec![0xab; len].into(),
            })
            .expect("writer alive");
        }
        fn armed(&self, port: PortId) -> bool {
            self.taps.borrow().contains_key(&port)
        }
    }

    /// A fresh directory, removed when dropped.
    struct TmpDir(PathBuf);

    impl TmpDir {
        fn new(tag: &str) -> TmpDir {
            let d = std::env::temp_dir().join(format!("vs-capture-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).expect("create temp dir");
            TmpDir(d)
        }
        fn join(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }
    }

    impl Drop for TmpDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Run `f` in a thread and give up after a deadline, so a regression that blocks
    /// (an open on a FIFO waits for a reader) fails the test instead of hanging it.
    fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| panic!("{what} did not return within 5 s"))
    }

    fn start(caps: &mut Captures, tap: &FakeTap, port: PortId, file: &Path) -> Result<u64> {
        caps.start(tap, port, file, Limits::default())
    }

    fn wait_done(caps: &mut Captures, tap: &FakeTap, id: u64) -> Status {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let s = caps.status(tap, id).expect("capture known");
            if s.done {
                return s;
            }
            assert!(Instant::now() < deadline, "capture {id} did not end: {s:?}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn pcap_frames(path: &Path) -> usize {
        let mut r = pcap_file::pcap::PcapReader::new(File::open(path).expect("open pcap"))
            .expect("pcap header");
        let mut n = 0;
        while let Some(p) = r.next_packet() {
            p.expect("pcap record");
            n += 1;
        }
        n
    }

    #[test]
    fn capture_new_file_is_pcap_0600_and_stop_flushes() {
        let d = TmpDir::new("new");
        let (tap, mut caps) = (FakeTap::default(), Captures::default());
        let file = d.join("a.pcap");
        let id = start(&mut caps, &tap, 1, &file).expect("start");
        let mode = std::fs::metadata(&file).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        for _ in 0..3 {
            tap.send(1, 60);
        }
        let s = caps.stop(&tap, id).expect("known").expect("stopped");
        assert_eq!((s.frames, s.reason), (3, CaptureEnd::Stopped));
        assert_eq!(s.bytes, PCAP_HEADER + 3 * (PCAP_RECORD + 60));
        assert_eq!(std::fs::metadata(&file).expect("stat").len(), s.bytes);
        assert_eq!(pcap_frames(&file), 3);
        assert!(!tap.armed(1), "stop disarms the tap");
        assert_eq!(caps.running(), 0);
    }

    #[test]
    fn capture_refuses_a_fifo_at_once() {
        let d = TmpDir::new("fifo");
        let fifo = d.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        let path = fifo.clone();
        let err = within("capture.start on a FIFO", move || {
            let (tap, mut caps) = (FakeTap::default(), Captures::default());
            start(&mut caps, &tap, 1, &path).map_err(|e| e.to_string())
        })
        .expect_err("a FIFO is refused");
        assert!(err.contains(&format!("{} exists", fifo.display())), "{err}");
        let meta = std::fs::symlink_metadata(&fifo).expect("still there");
        assert!(std::os::unix::fs::FileTypeExt::is_fifo(&meta.file_type()));
    }

    #[test]
    fn capture_refuses_a_symlink_and_leaves_its_target() {
        let d = TmpDir::new("symlink");
        let (tap, mut caps) = (FakeTap::default(), Captures::default());
        let target = d.join("target");
        std::fs::write(&target, b"keep me").expect("write target");
        let link = d.join("link.pcap");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        let err = start(&mut caps, &tap, 1, &link).expect_err("a symlink is refused");
        assert!(
            matches!(&err, CaptureError::Exists(p) if p == &link),
            "{err}"
        );
        assert_eq!(std::fs::read(&target).expect("target"), b"keep me");
        // A dangling one neither: its target is not created.
        let absent = d.join("absent");
        let dangling = d.join("dangling.pcap");
        std::os::unix::fs::symlink(&absent, &dangling).expect("symlink");
        let err = start(&mut caps, &tap, 1, &dangling).expect_err("refused");
        assert!(matches!(err, CaptureError::Exists(_)), "{err}");
        assert!(!absent.exists(), "the symlink was followed");
        assert!(!tap.armed(1));
        assert_eq!(caps.running(), 0);
    }

    #[test]
    fn capture_refuses_an_existing_file_and_keeps_its_contents() {
        let d = TmpDir::new("exists");
        let (tap, mut caps) = (FakeTap::default(), Captures::default());
        let file = d.join("old.pcap");
        std::fs::write(&file, b"precious").expect("write");
        let err = start(&mut caps, &tap, 1, &file).expect_err("an existing file is refused");
        assert_eq!(
            err.to_string(),
            format!(
                "capture file {} exists; the daemon writes only new files (remove it or name another)",
                file.display()
            )
        );
        assert_eq!(std::fs::read(&file).expect("read"), b"precious");
        // A directory is a path that exists too.
        let err = start(&mut caps, &tap, 1, &d.0).expect_err("a directory is refused");
        assert!(matches!(err, CaptureError::Exists(_)), "{err}");
    }

    #[test]
    fn capture_refuses_a_missing_directory() {
        let d = TmpDir::new("nodir");
        let (tap, mut caps) = (FakeTap::default(), Captures::default());
        let file = d.join("none/a.pcap");
        let err = start(&mut caps, &tap, 1, &file).expect_err("refused");
        assert!(
            matches!(&err, CaptureError::NoDirectory { dir, .. } if dir == &d.join("none")),
            "{err}"
        );
        assert!(err.to_string().contains("does not exist"), "{err}");
    }

    #[test]
    fn capture_ends_at_its_size_bound_and_is_reaped() {
        let d = TmpDir::new("bound");
        let (tap, mut caps) = (FakeTap::default(), Captures::default());
        let file = d.join("a.pcap");
        // Room for the header and three 100-byte frames, not four.
        let max_bytes = PCAP_HEADER + 3 * (PCAP_RECORD + 100) + 50;
        let limits = Limits {
            count: None,
            max_bytes,
        };
        let id = caps.start(&tap, 7, &file, limits).expect("start");
        for _ in 0..5 {
            tap.send(7, 100);
        }
        let s = wait_done(&mut caps, &tap, id);
        assert_eq!(s.reason, Some(CaptureEnd::MaxBytes), "{s:?}");
        assert_eq!(s.frames, 3);
        let len = std::fs::metadata(&file).expect("stat").len();
        assert!(len <= max_bytes, "{len} > {max_bytes}");
        assert_eq!(len, s.bytes);
        assert_eq!(pcap_frames(&file), 3);
        // Reaped: no longer running, its tap disarmed; stop collects the outcome once.
        assert_eq!(caps.running(), 0);
        assert!(!tap.armed(7));
        let st = caps.stop(&tap, id).expect("known").expect("ok");
        assert_eq!((st.frames, st.reason), (3, CaptureEnd::MaxBytes));
        assert!(caps.status(&tap, id).is_none());
    }

    #[test]
    fn capture_ends_at_its_count() {
        let d = TmpDir::new("count");
        let (tap, mut caps) = (FakeTap::default(), Captures::default());
        let limits = Limits {
            count: Some(2),
            ..Limits::default()
        };
        let id = caps
            .start(&tap, 3, &d.join("a.pcap"), limits)
            .expect("start");
        tap.send(3, 60);
        tap.send(3, 60);
        let s = wait_done(&mut caps, &tap, id);
        assert_eq!((s.frames, s.reason), (2, Some(CaptureEnd::Count)));
        assert!(!tap.armed(3));
    }

    #[test]
    fn capture_cap_refuses_the_17th() {
        let d = TmpDir::new("cap");
        let (tap, mut caps) = (FakeTap::default(), Captures::default());
        let ids: Vec<u64> = (0..MAX_CAPTURES as PortId)
            .map(|port| {
                start(&mut caps, &tap, port, &d.join(&format!("{port}.pcap"))).expect("start")
            })
            .collect();
        let extra = d.join("extra.pcap");
        let err = start(&mut caps, &tap, 100, &extra).expect_err("the 17th is refused");
        assert!(matches!(err, CaptureError::TooMany(MAX_CAPTURES)), "{err}");
        assert!(!extra.exists(), "a refused capture creates no file");
        caps.stop(&tap, ids[0]).expect("known").expect("stopped");
        start(&mut caps, &tap, 100, &extra).expect("room again after a stop");
    }

    #[test]
    fn capture_refuses_a_second_on_one_port() {
        let d = TmpDir::new("busy");
        let (tap, mut caps) = (FakeTap::default(), Captures::default());
        let id = start(&mut caps, &tap, 5, &d.join("a.pcap")).expect("start");
        let err = start(&mut caps, &tap, 5, &d.join("b.pcap")).expect_err("busy");
        assert!(matches!(err, CaptureError::Busy(i) if i == id), "{err}");
        assert!(!d.join("b.pcap").exists());
    }

    #[test]
    fn finished_captures_do_not_accumulate() {
        let d = TmpDir::new("reap");
        let (tap, mut caps) = (FakeTap::default(), Captures::default());
        let one = Limits {
            count: Some(1),
            ..Limits::default()
        };
        let mut last = 0;
        for n in 0..3 * MAX_CAPTURES as u64 {
            last = caps
                .start(&tap, 9, &d.join(&format!("{n}.pcap")), one)
                .expect("start: ended captures do not count against the cap");
            tap.send(9, 60);
            wait_done(&mut caps, &tap, last);
        }
        assert_eq!(caps.running(), 0);
        assert_eq!(caps.finished.len(), FINISHED_KEPT);
        assert!(caps.status(&tap, 1).is_none(), "the oldest is forgotten");
        assert!(caps.status(&tap, last).is_some_and(|s| s.done));
    }

    #[test]
    fn capture_ends_when_its_port_goes_away() {
        let d = TmpDir::new("gone");
        let (tap, mut caps) = (FakeTap::default(), Captures::default());
        let id = start(&mut caps, &tap, 2, &d.join("a.pcap")).expect("start");
        tap.send(2, 60);
        // The port removed: the worker drops its tap.
        tap.taps.borrow_mut().remove(&2);
        let s = wait_done(&mut caps, &tap, id);
        assert_eq!((s.frames, s.reason), (1, Some(CaptureEnd::PortGone)));
    }
}
