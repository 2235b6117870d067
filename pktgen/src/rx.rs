//! `pktgen rx`: counts what arrives on an interface until the duration ends or a signal
//! stops it, either in userspace through a switch port (every frame parsed for flows
//! and pktgen headers) or in the kernel with the xdp-count program (totals only).

use crate::cli::{RxArgs, RxBackend};
use crate::payload::now_ns;
use crate::report::{rates, Progress, RxReport};
use crate::sink::Sink;
use crate::xdp_count::XdpCounter;
use crate::{stop, Failure};
use anyhow::Context;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};
use switch::port::af_packet::PacketPort;
use switch::port::af_xdp::XdpPort;
use switch::port::{Burst, Port};

/// Longest the loops sleep before looking at the clock and the stop flag again.
const TICK_MS: u8 = 20;

fn runtime(e: anyhow::Error) -> Failure {
    Failure::Runtime(e)
}

pub fn run(args: &RxArgs) -> Result<RxReport, Failure> {
    let iface = args.iface.as_str();
    let deadline_after = args.duration.map(Duration::from_secs_f64);
    match args.backend {
        RxBackend::XdpCount => {
            let counter = XdpCounter::attach(iface)
                .with_context(|| format!("set up the xdp-count sink on {iface}"))
                .map_err(runtime)?;
            eprintln!(
                "pktgen rx: counting on {iface} (xdp-count, {} XDP)",
                counter.mode
            );
            count_in_kernel(&counter, iface, deadline_after)
        }
        RxBackend::AfPacket | RxBackend::AfXdp => {
            let mut port: Box<dyn Port> = match args.backend {
                RxBackend::AfXdp => Box::new(
                    XdpPort::open(iface)
                        .with_context(|| format!("open {iface} for receiving (af_xdp)"))
                        .map_err(runtime)?,
                ),
                _ => Box::new(
                    PacketPort::open(iface)
                        .with_context(|| format!("open {iface} for receiving (af_packet)"))
                        .map_err(runtime)?,
                ),
            };
            eprintln!("pktgen rx: counting on {iface} ({})", args.backend.name());
            count_in_userspace(port.as_mut(), args.backend.name(), iface, deadline_after)
        }
    }
}

fn count_in_userspace(
    port: &mut dyn Port,
    backend: &'static str,
    iface: &str,
    run_for: Option<Duration>,
) -> Result<RxReport, Failure> {
    let start = Instant::now();
    let deadline = run_for.map(|d| start + d);
    let mut sink = Sink::new();
    let mut burst = Burst::new();
    let mut progress = Progress::new("rx");
    while !stop::requested() && deadline.is_none_or(|d| Instant::now() < d) {
        burst.clear();
        let got = port
            .recv(&mut burst)
            .with_context(|| format!("receive on {iface}"))
            .map_err(runtime)?;
        if got == 0 {
            wait_readable(port.fd());
        } else {
            let now = now_ns();
            for frame in burst.iter() {
                sink.record(frame, now);
            }
        }
        if progress.due() {
            let loss = (sink.tagged > 0).then(|| sink.lost());
            progress.show(sink.frames, sink.bytes, loss);
        }
    }
    progress.finish();
    Ok(RxReport::from_sink(backend, iface, &sink, start.elapsed()))
}

/// Sleep until the port has frames or a tick passes.
fn wait_readable(fd: std::os::fd::RawFd) {
    // SAFETY: the fd belongs to the port, which outlives this call.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    // EINTR (a signal) or any other poll failure just ends the wait early.
    let _ = poll(&mut fds, PollTimeout::from(TICK_MS));
}

fn count_in_kernel(
    counter: &XdpCounter,
    iface: &str,
    run_for: Option<Duration>,
) -> Result<RxReport, Failure> {
    let start = Instant::now();
    let deadline = run_for.map(|d| start + d);
    let mut progress = Progress::new("rx");
    // When the counts first and last changed, for a rate over the traffic itself.
    // (when, frames, bytes) at the first and the last look that saw the counts move.
    type Sample = (Instant, u64, u64);
    let (mut first, mut last): (Option<Sample>, Option<Sample>) = (None, None);
    let mut seen = (0u64, 0u64);
    let read = || {
        counter
            .read()
            .with_context(|| format!("read the xdp-count counters of {iface}"))
            .map_err(runtime)
    };
    loop {
        let done = stop::requested() || deadline.is_some_and(|d| Instant::now() >= d);
        let now = Instant::now();
        let (frames, bytes) = read()?;
        if (frames, bytes) != seen {
            if first.is_none() {
                first = Some((now, frames, bytes));
            }
            last = Some((now, frames, bytes));
            seen = (frames, bytes);
        }
        if progress.due() {
            progress.show(frames, bytes, None);
        }
        if done {
            break;
        }
        std::thread::sleep(Duration::from_millis(u64::from(TICK_MS)));
    }
    progress.finish();
    let run = start.elapsed();
    let (frames, bytes) = seen;
    // The rate over the traffic itself: between the first and the last look that saw
    // the counts move, over what was counted in between.
    let (pps, bps) = match (first, last) {
        (Some((t0, f0, b0)), Some((t1, f1, b1))) if t1 > t0 && f1 > f0 => {
            rates(f1 - f0, b1 - b0, t1.duration_since(t0).as_secs_f64())
        }
        _ => rates(frames, bytes, run.as_secs_f64()),
    };
    Ok(RxReport {
        mode: "rx",
        backend: "xdp-count",
        iface: iface.to_string(),
        frames,
        bytes,
        duration_s: run.as_secs_f64(),
        pps,
        bps,
        pktgen_frames: None,
        streams: None,
        loss: None,
        reordered: None,
        duplicates: None,
        latency_ns: None,
        flow_count: None,
        flows: None,
    })
}
