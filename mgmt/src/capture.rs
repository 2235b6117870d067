//! Packet capture for `vswitchctl capture`: the data plane tees a port's frames into a
//! bounded channel, and a writer thread here turns them into a pcap file that tcpdump
//! and tshark read.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::BufWriter;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, UNIX_EPOCH};

use crossbeam_channel::{bounded, RecvTimeoutError};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::DataLink;
use switch::engine::EngineError;
use switch::{Captured, Engine, PortId};

/// What a capture fails with.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("create capture file {}", .path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
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

struct Active {
    port: PortId,
    stop: Arc<AtomicBool>,
    frames: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<()>>>,
}

#[derive(Default)]
pub struct Captures {
    next: u64,
    active: HashMap<u64, Active>,
}

/// Where a capture stands.
pub struct Status {
    pub frames: u64,
    pub done: bool,
}

impl Captures {
    /// Start writing `port`'s frames to `file`; stops by itself after `count` frames.
    pub fn start(
        &mut self,
        engine: &Engine,
        port: PortId,
        file: &Path,
        count: Option<u64>,
    ) -> Result<u64> {
        let out = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(file)
            .map_err(|source| CaptureError::Create {
                path: file.to_path_buf(),
                source,
            })?;
        let header = PcapHeader {
            datalink: DataLink::ETHERNET,
            ..Default::default()
        };
        let mut writer =
            PcapWriter::with_header(BufWriter::new(out), header).map_err(CaptureError::Header)?;
        let (tx, rx) = bounded::<Captured>(TAP_DEPTH);
        let stop = Arc::new(AtomicBool::new(false));
        let frames = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let (s, f, d, path) = (
            stop.clone(),
            frames.clone(),
            done.clone(),
            PathBuf::from(file),
        );
        let thread = std::thread::Builder::new()
            .name("vs-capture".into())
            .spawn(move || {
                let result = (|| -> Result<()> {
                    while count.is_none_or(|c| f.load(Ordering::Relaxed) < c) {
                        match rx.recv_timeout(Duration::from_millis(100)) {
                            Ok(c) => {
                                let ts = c.at.duration_since(UNIX_EPOCH).unwrap_or_default();
                                let pkt = PcapPacket::new(ts, c.frame.len() as u32, &c.frame);
                                writer.write_packet(&pkt).map_err(|source| {
                                    CaptureError::Write {
                                        path: path.clone(),
                                        source,
                                    }
                                })?;
                                f.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(RecvTimeoutError::Timeout) if s.load(Ordering::Relaxed) => break,
                            Err(RecvTimeoutError::Timeout) => {}
                            Err(RecvTimeoutError::Disconnected) => break,
                        }
                    }
                    use std::io::Write;
                    writer
                        .into_writer()
                        .flush()
                        .map_err(|source| CaptureError::Flush {
                            path: path.clone(),
                            source,
                        })
                })();
                d.store(true, Ordering::Release);
                result
            })
            .map_err(CaptureError::Spawn)?;
        engine.capture(port, Some(tx))?;
        self.next += 1;
        self.active.insert(
            self.next,
            Active {
                port,
                stop,
                frames,
                done,
                thread: Some(thread),
            },
        );
        Ok(self.next)
    }

    pub fn status(&self, id: u64) -> Option<Status> {
        self.active.get(&id).map(|a| Status {
            frames: a.frames.load(Ordering::Relaxed),
            done: a.done.load(Ordering::Acquire),
        })
    }

    /// Disarm the tap, let the writer drain and close the file; returns frames written.
    pub fn stop(&mut self, engine: &Engine, id: u64) -> Option<Result<u64>> {
        let mut a = self.active.remove(&id)?;
        let _ = engine.capture(a.port, None);
        a.stop.store(true, Ordering::Relaxed);
        let joined = a.thread.take().map(|t| t.join());
        let frames = a.frames.load(Ordering::Relaxed);
        Some(match joined {
            Some(Ok(Ok(()))) | None => Ok(frames),
            Some(Ok(Err(e))) => Err(e),
            Some(Err(_)) => Err(CaptureError::Panicked),
        })
    }
}
