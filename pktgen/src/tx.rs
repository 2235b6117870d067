//! `pktgen tx`: checks the request, builds the flow templates, opens one output per
//! sender thread (pinned one per core when there are several), runs the send loops
//! (bursts through a port or pcap, or xdp-live batches) and adds up what they sent.

use crate::backend::pcap::PcapOut;
use crate::backend::port::PortOut;
use crate::backend::FrameOut;
use crate::cli::{Proto, Range, Rate, SizeSpec, TxArgs, TxBackend};
use crate::pace::{pause_ns, TokenBucket};
use crate::payload::now_ns;
use crate::report::{rates, Progress, TxReport};
use crate::template::{SizeSeq, Template, TrafficSpec, VxlanSpec};
use crate::xdp_live::LiveSender;
use crate::{stop, Failure};
use anyhow::{anyhow, Context};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switch::port::{Burst, BURST, MAX_FRAME};

/// How long the end of a run waits for queued frames to leave.
const FLUSH_WAIT: Duration = Duration::from_secs(2);
/// Frames per BPF_PROG_TEST_RUN call: large enough to amortise the syscall, small
/// enough that stop requests and deadlines are seen within milliseconds.
const LIVE_CHUNK: u64 = 1 << 16;
/// Per-call chunk when frames change between calls (several flows or sizes).
const LIVE_CHUNK_VARIED: u64 = 1 << 12;

/// Totals all sender threads add to.
#[derive(Default)]
struct Counters {
    frames: AtomicU64,
    bytes: AtomicU64,
    /// When the last sender finished (after its flush), in ns since the run started.
    end_ns: AtomicU64,
}

/// What one sender thread does.
struct Job {
    stream: u16,
    templates: Arc<Vec<Template>>,
    sizes: SizeSeq,
    rate: Option<Rate>,
    quota: Option<u64>,
    deadline: Option<Instant>,
}

impl Job {
    fn done(&self, sent: u64) -> bool {
        stop::requested()
            || self.quota.is_some_and(|q| sent >= q)
            || self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

enum Output {
    Frames(Box<dyn FrameOut>),
    Live(Arc<LiveSender>),
}

fn usage(msg: impl Into<String>) -> Failure {
    Failure::Usage(msg.into())
}

/// The interface's MAC from sysfs, if there is one.
fn iface_mac(iface: &str) -> Option<[u8; 6]> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{iface}/address")).ok()?;
    crate::cli::parse_mac(text.trim()).ok()
}

fn check(args: &TxArgs) -> Result<(), Failure> {
    if args.pcap.is_none() && args.iface.is_none() {
        return Err(usage(
            "tx needs --iface IF (or --pcap FILE to write the frames to a file)",
        ));
    }
    if args.pcap.is_some() {
        if args.count.is_none() && args.duration.is_none() {
            return Err(usage("--pcap needs --count N or --duration SECS"));
        }
        if args.threads > 1 {
            return Err(usage(
                "--pcap writes one file from one thread; drop --threads",
            ));
        }
    } else if args.threads > 1 && matches!(args.backend, TxBackend::AfXdp | TxBackend::Tap) {
        return Err(usage(format!(
            "--backend {} sends from one queue; use --threads 1 (or af_packet / xdp-live for several)",
            args.backend.name()
        )));
    }
    if let Some(n) = args.count {
        if n < u64::from(args.threads) {
            return Err(usage(format!(
                "--count {n} is fewer frames than --threads {}",
                args.threads
            )));
        }
    }
    Ok(())
}

fn traffic(args: &TxArgs) -> Result<TrafficSpec, Failure> {
    let (src_ip, dst_ip) = crate::cli::ip_pair(args.src_ip, args.dst_ip).map_err(usage)?;
    let iface_mac = args.iface.as_deref().and_then(iface_mac);
    let src_mac = args
        .src_mac
        .unwrap_or_else(|| Range::one(iface_mac.unwrap_or([0x02, 0, 0, 0, 0, 0x01])));
    let vxlan = match (
        args.vxlan,
        args.outer_src,
        args.outer_dst,
        args.outer_dst_mac,
    ) {
        (Some(vni), Some(outer_src), Some(outer_dst), Some(outer_dst_mac)) => Some(VxlanSpec {
            vni,
            outer_src_mac: iface_mac.unwrap_or(src_mac.lo),
            outer_dst_mac,
            outer_src,
            outer_dst,
        }),
        _ => None,
    };
    Ok(TrafficSpec {
        proto: args.proto,
        src_mac,
        dst_mac: args.dst_mac,
        src_ip,
        dst_ip,
        sport: args.sport,
        dport: args.dport,
        flows: args.flows,
        vxlan,
    })
}

/// Split `total` over `n` threads, the remainder to the first ones.
fn share(total: u64, n: u64, i: u64) -> u64 {
    total / n + u64::from(i < total % n)
}

fn scale(rate: Rate, n: u32) -> Rate {
    match rate {
        Rate::Pps(p) => Rate::Pps(p / f64::from(n)),
        Rate::Bps(b) => Rate::Bps(b / f64::from(n)),
    }
}

pub fn run(args: &TxArgs) -> Result<TxReport, Failure> {
    check(args)?;
    let spec = traffic(args)?;
    let templates = spec.templates().map_err(usage)?;
    let floor = templates
        .first()
        .map(Template::min_len)
        .ok_or_else(|| usage("no flows to send"))?;
    if let SizeSpec::Fixed(n) = args.size {
        if n < floor {
            let family = if spec.src_ip.lo.is_ipv6() {
                "IPv6"
            } else {
                "IPv4"
            };
            let what = match (args.proto, spec.vxlan.is_some()) {
                (Proto::Udp, false) => format!("{family} UDP"),
                (Proto::TcpSyn, false) => format!("{family} TCP SYN"),
                (_, true) => format!("VXLAN-encapsulated {family}"),
            };
            return Err(usage(format!(
                "--size {n} is too small for {what} frames (at least {floor} bytes)"
            )));
        }
    }
    if SizeSeq::new(args.size, floor, 1).max() > MAX_FRAME {
        return Err(usage(format!("frames are at most {MAX_FRAME} bytes")));
    }
    let templates = Arc::new(templates);
    let threads = args.threads;

    // Open every output before sending anything, so a bad interface fails cleanly.
    let mut outputs = Vec::new();
    let backend_name = if args.pcap.is_some() {
        "pcap"
    } else {
        args.backend.name()
    };
    if let Some(path) = &args.pcap {
        let out = PcapOut::create(path).map_err(|e| Failure::Runtime(e.into()))?;
        outputs.push(Output::Frames(Box::new(out)));
    } else {
        let iface = args.iface.as_deref().unwrap_or_default();
        let live = match args.backend {
            TxBackend::XdpLive => Some(Arc::new(
                LiveSender::load(iface, common_header(&templates).as_ref())
                    .with_context(|| format!("set up xdp-live on {iface}"))
                    .map_err(Failure::Runtime)?,
            )),
            _ => None,
        };
        for _ in 0..threads {
            let out = match args.backend {
                TxBackend::AfPacket => PortOut::af_packet(iface),
                TxBackend::AfXdp => PortOut::af_xdp(iface),
                TxBackend::Tap => PortOut::tap(iface),
                TxBackend::XdpLive => {
                    if let Some(l) = &live {
                        outputs.push(Output::Live(l.clone()));
                    }
                    continue;
                }
            }
            .with_context(|| format!("open {iface} for sending ({})", args.backend.name()))
            .map_err(Failure::Runtime)?;
            outputs.push(Output::Frames(Box::new(out)));
        }
    }

    let counters = Arc::new(Counters::default());
    let cores = if threads > 1 {
        core_affinity::get_core_ids().unwrap_or_default()
    } else {
        Vec::new()
    };
    let start = Instant::now();
    let deadline = args.duration.map(|s| start + Duration::from_secs_f64(s));
    let mut handles = Vec::new();
    for (i, out) in outputs.into_iter().enumerate() {
        let job = Job {
            stream: i as u16,
            templates: templates.clone(),
            sizes: SizeSeq::new(args.size, floor, i as u64 + 1),
            rate: args.rate.map(|r| scale(r, threads)),
            quota: args.count.map(|c| share(c, u64::from(threads), i as u64)),
            deadline,
        };
        let counters = counters.clone();
        let core = (!cores.is_empty()).then(|| cores[i % cores.len()]);
        let handle = std::thread::Builder::new()
            .name(format!("pktgen-tx{i}"))
            .spawn(move || {
                if let Some(core) = core {
                    if !core_affinity::set_for_current(core) {
                        eprintln!("pktgen: could not pin sender {i} to core {}", core.id);
                    }
                }
                let mut out = out;
                let res = match &mut out {
                    Output::Frames(out) => send_bursts(out.as_mut(), job, &counters),
                    Output::Live(live) => send_live(live, job, &counters),
                };
                let end = start.elapsed().as_nanos() as u64;
                counters.end_ns.fetch_max(end, Ordering::Relaxed);
                // Closing a packet socket waits for an RCU grace period (tens of ms):
                // not part of the sending.
                drop(out);
                res
            })
            .map_err(|e| Failure::Runtime(anyhow!("start sender thread {i}: {e}")))?;
        handles.push(handle);
    }

    let mut progress = Progress::new("tx");
    while !handles.iter().all(|h| h.is_finished()) {
        std::thread::sleep(Duration::from_millis(5));
        if progress.due() {
            progress.show(
                counters.frames.load(Ordering::Relaxed),
                counters.bytes.load(Ordering::Relaxed),
                None,
            );
        }
    }
    progress.finish();
    let mut first_err = None;
    for (i, h) in handles.into_iter().enumerate() {
        let res = h
            .join()
            .unwrap_or_else(|_| Err(io::Error::other(format!("sender thread {i} panicked"))));
        if let Err(e) = res {
            first_err.get_or_insert(e);
        }
    }
    if let Some(e) = first_err {
        return Err(Failure::Runtime(
            anyhow::Error::new(e).context("sending failed"),
        ));
    }
    // The senders' own span, not this loop's polling granularity.
    let elapsed = counters.end_ns.load(Ordering::Relaxed) as f64 / 1e9;
    let frames = counters.frames.load(Ordering::Relaxed);
    let bytes = counters.bytes.load(Ordering::Relaxed);
    let (pps, bps) = rates(frames, bytes, elapsed);
    Ok(TxReport {
        mode: "tx",
        backend: backend_name,
        iface: args.iface.clone().filter(|_| args.pcap.is_none()),
        pcap: args.pcap.as_ref().map(|p| p.display().to_string()),
        threads,
        flows: templates.len() as u64,
        frames,
        bytes,
        duration_s: elapsed,
        pps,
        bps,
    })
}

/// The burst loop for ports and pcap: fill a burst (as far as the rate allows), push
/// it out whole (the frames carry sequence numbers, so none may be skipped), repeat.
fn send_bursts(out: &mut dyn FrameOut, mut job: Job, counters: &Counters) -> io::Result<()> {
    let templates = job.templates.clone();
    let mut burst = Burst::new();
    let mut bucket = job
        .rate
        .map(|r| TokenBucket::new(r, BURST, job.sizes.max(), now_ns()));
    let mut next_len = job.sizes.next_size();
    let (mut seq, mut flow, mut sent) = (0u64, 0usize, 0u64);
    'run: while !job.done(sent) {
        let room = job
            .quota
            .map_or(BURST as u64, |q| (q - sent).min(BURST as u64)) as usize;
        let now = now_ns();
        if let Some(b) = bucket.as_mut() {
            b.refill(now);
            let wait = b.wait_n_ns(next_len, b.gather(next_len, room));
            if wait > 0 {
                pause_ns(wait);
                continue;
            }
        }
        burst.clear();
        while burst.len() < room {
            if let Some(b) = bucket.as_mut() {
                if !b.try_take(next_len, now) {
                    break;
                }
            }
            let Some(slot) = burst.slot() else { break };
            templates[flow].write(slot, next_len, job.stream, seq, now);
            burst.commit(next_len);
            seq += 1;
            flow = (flow + 1) % templates.len();
            next_len = job.sizes.next_size();
        }
        if burst.is_empty() {
            if let Some(b) = &bucket {
                pause_ns(b.wait_ns(next_len));
            }
            continue;
        }
        while !burst.is_empty() {
            let taken = out.send(&burst)?;
            if taken == 0 {
                if stop::requested() {
                    break 'run;
                }
                std::thread::yield_now();
                continue;
            }
            let bytes: usize = (0..taken).map(|i| burst.frame(i).len()).sum();
            counters.frames.fetch_add(taken as u64, Ordering::Relaxed);
            counters.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
            sent += taken as u64;
            burst.consume(taken);
        }
    }
    let deadline = Instant::now() + FLUSH_WAIT;
    if !out.flush(deadline)? {
        eprintln!(
            "pktgen: sender {}: frames still queued after {FLUSH_WAIT:?}",
            job.stream
        );
    }
    Ok(())
}

/// The xdp-live loop: one BPF_PROG_TEST_RUN per chunk of identical frames.
fn send_live(live: &LiveSender, mut job: Job, counters: &Counters) -> io::Result<()> {
    let templates = job.templates.clone();
    let varied = templates.len() > 1 || !matches!(job.sizes.spec(), SizeSpec::Fixed(_));
    let chunk = if varied {
        LIVE_CHUNK_VARIED
    } else {
        LIVE_CHUNK
    };
    let mut bucket = job
        .rate
        .map(|r| TokenBucket::new(r, chunk as usize, job.sizes.max(), now_ns()));
    let mut frame = vec![0u8; MAX_FRAME];
    let mut len = job.sizes.next_size();
    let (mut flow, mut sent) = (0usize, 0u64);
    templates[flow].write_plain(&mut frame, len);
    while !job.done(sent) {
        let mut n = job.quota.map_or(chunk, |q| (q - sent).min(chunk));
        if let Some(b) = bucket.as_mut() {
            n = b.take_up_to(len, n, now_ns());
            if n == 0 {
                pause_ns(b.wait_ns(len));
                continue;
            }
        }
        let done = live.send(&frame[..len], n as u32)?;
        counters.frames.fetch_add(done, Ordering::Relaxed);
        counters
            .bytes
            .fetch_add(done * len as u64, Ordering::Relaxed);
        sent += done;
        if varied {
            flow = (flow + 1) % templates.len();
            len = job.sizes.next_size();
            templates[flow].write_plain(&mut frame, len);
        }
    }
    Ok(())
}

/// The Ethernet header every template starts with, if they all share one (the live
/// sender writes it back before each send: `xdp_live::redirect_program`).
fn common_header(templates: &[Template]) -> Option<[u8; 14]> {
    let mut header = None;
    for t in templates {
        let mut buf = vec![0u8; t.min_len()];
        t.write_plain(&mut buf, t.min_len());
        let h: [u8; 14] = buf.get(..14)?.try_into().ok()?;
        match header {
            None => header = Some(h),
            Some(x) if x != h => return None,
            Some(_) => {}
        }
    }
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_split_over_threads_add_up() {
        let parts: Vec<u64> = (0..3).map(|i| share(1000, 3, i)).collect();
        assert_eq!(parts, vec![334, 333, 333]);
        assert_eq!((0..4).map(|i| share(7, 4, i)).sum::<u64>(), 7);
    }
}
