//! What pktgen prints: the final report (text, or one JSON object with --json) and the
//! live one-line progress display on stderr, shown only when stderr is a terminal.

use crate::sink::{Latency, Sink};
use serde::Serialize;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Flows listed one by one in a report; the rest are only counted.
const LISTED_FLOWS: usize = 64;

#[derive(Debug, Serialize)]
pub struct TxReport {
    pub mode: &'static str,
    pub backend: &'static str,
    pub iface: Option<String>,
    pub pcap: Option<String>,
    pub threads: u32,
    pub flows: u64,
    pub frames: u64,
    pub bytes: u64,
    pub duration_s: f64,
    pub pps: f64,
    pub bps: f64,
}

#[derive(Debug, Serialize)]
pub struct FlowReport {
    pub src: String,
    pub dst: String,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    pub frames: u64,
    pub bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct RxReport {
    pub mode: &'static str,
    pub backend: &'static str,
    pub iface: String,
    pub frames: u64,
    pub bytes: u64,
    /// Seconds counted for (the whole run).
    pub duration_s: f64,
    /// Rates over the stretch from the first to the last frame (over the whole run when
    /// fewer than two frames arrived or the backend cannot tell).
    pub pps: f64,
    pub bps: f64,
    /// Frames that carried a pktgen sequence/timestamp header.
    pub pktgen_frames: Option<u64>,
    pub streams: Option<usize>,
    pub loss: Option<u64>,
    pub reordered: Option<u64>,
    pub duplicates: Option<u64>,
    pub latency_ns: Option<Latency>,
    pub flow_count: Option<usize>,
    pub flows: Option<Vec<FlowReport>>,
}

/// Frames/bytes over a time span as (pps, bps).
pub fn rates(frames: u64, bytes: u64, secs: f64) -> (f64, f64) {
    if secs <= 0.0 {
        return (0.0, 0.0);
    }
    (frames as f64 / secs, bytes as f64 * 8.0 / secs)
}

impl RxReport {
    /// The report for a userspace sink that saw every frame.
    pub fn from_sink(backend: &'static str, iface: &str, sink: &Sink, run: Duration) -> Self {
        let span = match sink.first_ns {
            Some(first) if sink.frames > 1 && sink.last_ns > first => {
                (sink.last_ns - first) as f64 / 1e9
            }
            _ => run.as_secs_f64(),
        };
        let (pps, bps) = rates(sink.frames, sink.bytes, span);
        let tagged = sink.tagged > 0;
        let flows = sink.flows();
        RxReport {
            mode: "rx",
            backend,
            iface: iface.to_string(),
            frames: sink.frames,
            bytes: sink.bytes,
            duration_s: run.as_secs_f64(),
            pps,
            bps,
            pktgen_frames: Some(sink.tagged),
            streams: tagged.then(|| sink.streams()),
            loss: tagged.then(|| sink.lost()),
            reordered: tagged.then(|| sink.reordered()),
            duplicates: tagged.then(|| sink.duplicates()),
            latency_ns: sink.latency(),
            flow_count: Some(flows.len()),
            flows: Some(
                flows
                    .into_iter()
                    .take(LISTED_FLOWS)
                    .map(|(k, c)| FlowReport {
                        src: k.src.to_string(),
                        dst: k.dst.to_string(),
                        proto: k.proto,
                        sport: k.sport,
                        dport: k.dport,
                        frames: c.frames,
                        bytes: c.bytes,
                    })
                    .collect(),
            ),
        }
    }
}

/// 1234567 -> "1.23M".
pub fn si(v: f64) -> String {
    let (d, s) = if v >= 1e9 {
        (1e9, "G")
    } else if v >= 1e6 {
        (1e6, "M")
    } else if v >= 1e3 {
        (1e3, "k")
    } else {
        (1.0, "")
    };
    format!("{:.2}{s}", v / d)
}

pub fn tx_text(r: &TxReport) -> String {
    let target = match (&r.iface, &r.pcap) {
        (_, Some(p)) => format!("pcap {p}"),
        (Some(i), None) => format!("{i} ({})", r.backend),
        (None, None) => r.backend.to_string(),
    };
    format!(
        "tx {target}: {} frames, {} bytes in {:.3} s: {}pps, {}bps ({} threads, {} flows)",
        r.frames,
        r.bytes,
        r.duration_s,
        si(r.pps),
        si(r.bps),
        r.threads,
        r.flows
    )
}

pub fn rx_text(r: &RxReport) -> String {
    let mut s = format!(
        "rx {} ({}): {} frames, {} bytes in {:.3} s: {}pps, {}bps",
        r.iface,
        r.backend,
        r.frames,
        r.bytes,
        r.duration_s,
        si(r.pps),
        si(r.bps)
    );
    if let (Some(tagged), Some(loss), Some(re), Some(dup)) =
        (r.pktgen_frames, r.loss, r.reordered, r.duplicates)
    {
        s += &format!("\n  pktgen frames {tagged}: loss {loss}, reordered {re}, duplicates {dup}");
    }
    if let Some(l) = &r.latency_ns {
        s += &format!(
            "\n  latency ns: min {} p50 {} p90 {} p99 {} p99.9 {} max {}",
            l.min, l.p50, l.p90, l.p99, l.p99_9, l.max
        );
    }
    if let Some(flows) = &r.flows {
        if flows.len() > 1 {
            s += &format!("\n  flows: {}", r.flow_count.unwrap_or(flows.len()));
            for f in flows.iter().take(8) {
                s += &format!(
                    "\n    {}:{} -> {}:{} proto {}: {} frames",
                    f.src, f.sport, f.dst, f.dport, f.proto, f.frames
                );
            }
        }
    }
    s
}

/// Print a report: JSON on one line, or text.
pub fn print<T: Serialize>(report: &T, json: bool, text: impl FnOnce(&T) -> String) {
    if json {
        match serde_json::to_string(report) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("pktgen: cannot encode the report as JSON: {e}"),
        }
    } else {
        println!("{}", text(report));
    }
}

/// The live progress line: rewritten in place at most every `EVERY`.
pub struct Progress {
    enabled: bool,
    label: &'static str,
    start: Instant,
    last: Instant,
    last_frames: u64,
    last_bytes: u64,
    shown: bool,
}

impl Progress {
    const EVERY: Duration = Duration::from_millis(500);

    pub fn new(label: &'static str) -> Self {
        let now = Instant::now();
        Progress {
            enabled: std::io::stderr().is_terminal(),
            label,
            start: now,
            last: now,
            last_frames: 0,
            last_bytes: 0,
            shown: false,
        }
    }

    /// Whether it is time to call `show` (cheap; call it often).
    pub fn due(&self) -> bool {
        self.enabled && self.last.elapsed() >= Self::EVERY
    }

    pub fn show(&mut self, frames: u64, bytes: u64, loss: Option<u64>) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        let dt = now.duration_since(self.last).as_secs_f64();
        let (pps, bps) = rates(frames - self.last_frames, bytes - self.last_bytes, dt);
        let loss = loss.map(|l| format!(" loss {l}")).unwrap_or_default();
        let mut err = std::io::stderr().lock();
        // A progress line that cannot be written is not worth failing the run for.
        let _ = write!(
            err,
            "\r\x1b[2K{} {:6.1}s {}pps {}bps total {} frames{loss}",
            self.label,
            now.duration_since(self.start).as_secs_f64(),
            si(pps),
            si(bps),
            frames
        );
        let _ = err.flush();
        self.last = now;
        self.last_frames = frames;
        self.last_bytes = bytes;
        self.shown = true;
    }

    /// End the progress line so the report starts on a fresh one.
    pub fn finish(&mut self) {
        if self.shown {
            eprintln!();
            self.shown = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn si_prefixes() {
        assert_eq!(si(999.0), "999.00");
        assert_eq!(si(1500.0), "1.50k");
        assert_eq!(si(6_200_000.0), "6.20M");
        assert_eq!(si(1e10), "10.00G");
    }

    #[test]
    fn rx_report_json_has_the_contract_fields() {
        let mut sink = Sink::new();
        sink.record(&[0u8; 60], 10);
        let r = RxReport::from_sink("af_packet", "veth0", &sink, Duration::from_secs(1));
        let v: serde_json::Value = serde_json::to_value(&r).unwrap();
        for k in [
            "frames",
            "bytes",
            "pps",
            "bps",
            "loss",
            "reordered",
            "duplicates",
            "latency_ns",
        ] {
            assert!(v.get(k).is_some(), "missing {k}");
        }
        assert_eq!(v["frames"], 1);
        assert_eq!(v["loss"], serde_json::Value::Null);
    }
}
