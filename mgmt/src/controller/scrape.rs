//! The metrics address (`--metrics-addr`): `GET /metrics` (Prometheus text format, from
//! the snapshots `stats`, `fdb` and the router already give) and `GET /healthz` (200
//! when every worker answers and the state was saved, else 503 saying which is not).

use crate::http_door::Call;
use crate::metrics::{self, Families};

use super::*;

impl Controller {
    pub fn metrics_fd(&self) -> Option<std::os::fd::RawFd> {
        self.metrics.as_ref().map(|m| m.wake_fd())
    }

    /// Answer every request waiting on the metrics address.
    pub fn metrics_calls(&mut self) {
        let Some(calls) = self.metrics.as_ref().map(|m| m.drain()) else {
            return;
        };
        for call in calls {
            self.scrape(call);
        }
    }

    fn scrape(&mut self, call: Call) {
        const TEXT: &str = "text/plain; charset=utf-8";
        if call.verb != hyper::Method::GET && call.verb != hyper::Method::HEAD {
            return call.answer(405, TEXT, b"GET only\n".to_vec());
        }
        match call.method.as_str() {
            "metrics" => match self.render_metrics() {
                Ok(body) => call.answer(200, metrics::CONTENT_TYPE, body),
                Err(e) => call.answer(500, TEXT, format!("{e}\n").into_bytes()),
            },
            "healthz" => match self.health() {
                Ok(()) => call.answer(200, TEXT, b"ok\n".to_vec()),
                Err(why) => call.answer(503, TEXT, format!("{why}\n").into_bytes()),
            },
            _ => call.answer(
                404,
                TEXT,
                b"not found: /metrics and /healthz are served\n".to_vec(),
            ),
        }
    }

    /// Whether the daemon is well: the workers answer, the state was saved.
    fn health(&self) -> Result<(), String> {
        self.engine
            .barrier()
            .map_err(|e| format!("the data plane does not answer: {e}"))?;
        if let Some(e) = self.save_failed.borrow().as_ref() {
            return Err(format!("the state was not saved: {e}"));
        }
        Ok(())
    }

    fn render_metrics(&mut self) -> Result<Vec<u8>, String> {
        let mut f = Families::default();
        f.gauge(
            "build_info",
            "The running vswitchd's version (always 1).",
            &[("version", env!("CARGO_PKG_VERSION"))],
            1.0,
        );
        let stats = self
            .stats(api::StatsGet::default())
            .map_err(|e| e.message)?;
        for p in &stats.ports {
            let network = p
                .network
                .as_ref()
                .map(|n| n.to_string())
                .unwrap_or_default();
            let sandbox = p.sandbox.clone().unwrap_or_default();
            let l = [
                ("port", p.name.as_str()),
                ("network", network.as_str()),
                ("sandbox", sandbox.as_str()),
            ];
            let c = &p.counters;
            for (name, help, v) in [
                (
                    "port_rx_packets_total",
                    "Frames received on the port (kernel fast path included).",
                    c.rx_packets,
                ),
                (
                    "port_rx_bytes_total",
                    "Bytes received on the port (kernel fast path included).",
                    c.rx_bytes,
                ),
                (
                    "port_tx_packets_total",
                    "Frames sent on the port (kernel fast path included).",
                    c.tx_packets,
                ),
                (
                    "port_tx_bytes_total",
                    "Bytes sent on the port (kernel fast path included).",
                    c.tx_bytes,
                ),
                (
                    "port_fast_path_rx_packets_total",
                    "Frames received that the kernel fast path forwarded.",
                    c.fast_path_rx_packets,
                ),
                (
                    "port_fast_path_tx_packets_total",
                    "Frames sent by the kernel fast path.",
                    c.fast_path_tx_packets,
                ),
                (
                    "port_fdb_full_total",
                    "MACs not learned because the network's or the port's FDB bound was reached.",
                    c.fdb_full,
                ),
            ] {
                f.counter(name, help, &l, v);
            }
            for (reason, v) in &c.drops {
                let mut dl = l.to_vec();
                dl.push(("reason", reason.as_str()));
                f.counter("port_drops_total", "Frames dropped, by reason.", &dl, *v);
            }
        }
        for w in &stats.workers {
            let id = w.id.to_string();
            let l = [("worker", id.as_str())];
            for (name, help, v) in [
                (
                    "worker_busy_polls_total",
                    "Polls that found work.",
                    w.busy_polls,
                ),
                (
                    "worker_idle_polls_total",
                    "Polls that found none.",
                    w.idle_polls,
                ),
                (
                    "worker_sleeps_total",
                    "Times the worker slept (adaptive polling).",
                    w.sleeps,
                ),
                (
                    "worker_rx_packets_total",
                    "Frames the worker received.",
                    w.rx_packets,
                ),
                (
                    "worker_tx_packets_total",
                    "Frames the worker sent.",
                    w.tx_packets,
                ),
                (
                    "worker_cross_worker_packets_total",
                    "Frames handed to another worker.",
                    w.cross_worker,
                ),
                ("worker_drops_total", "Frames the worker dropped.", w.drops),
            ] {
                f.counter(name, help, &l, v);
            }
            f.gauge(
                "worker_ports",
                "Ports the worker polls.",
                &l,
                w.ports as f64,
            );
            if let Ok(serde_json::Value::Object(stages)) = serde_json::to_value(&w.stages) {
                for (stage, v) in stages {
                    let sl = [("worker", id.as_str()), ("stage", stage.as_str())];
                    f.counter(
                        "worker_stage_packets_total",
                        "Frames through each stage of the worker's graph.",
                        &sl,
                        v.as_u64().unwrap_or(0),
                    );
                }
            }
        }
        let nets: Vec<(String, switch::NetId)> = self
            .state
            .networks
            .values()
            .map(|n| (n.name.clone(), n.num))
            .collect();
        for (name, num) in nets {
            if let Ok(entries) = self.engine.fdb(num) {
                f.gauge(
                    "fdb_entries",
                    "MAC addresses the network's FDB holds (learned and static).",
                    &[("network", name.as_str())],
                    entries.len() as f64,
                );
            }
        }
        if let Some(r) = &stats.router {
            let r = &r.0;
            f.counters_of("router", "The router", &r.router, &[], &[]);
            f.counters_of("nat", "The NAT", &r.nat, &[], &[]);
            f.gauge(
                "nat_sessions",
                "NAT sessions in the table.",
                &[],
                r.sessions as f64,
            );
            f.gauge(
                "nat_fast_path_sessions",
                "NAT sessions the kernel fast path holds.",
                &[],
                r.fast_path_sessions as f64,
            );
            f.counters_of("arp", "The router's ARP cache", &r.arp, &["entries"], &[]);
            f.counters_of(
                "ndp",
                "The router's neighbour cache",
                &r.ndp,
                &["entries"],
                &[],
            );
            f.counters_of("vtep", "The VTEP", &r.overlay, &[], &[]);
            for (reason, v) in super::api::Router(r.clone()).overlay_drops() {
                f.counter(
                    "vtep_decap_drops_total",
                    "Tunnel frames the VTEP dropped, by reason.",
                    &[("reason", reason.as_str())],
                    v,
                );
            }
        }
        if let Some(d) = &stats.dns {
            f.counters_of("dns", "The embedded resolver", &d.resolver, &[], &[]);
            f.gauge(
                "dns_inflight",
                "Queries waiting for an upstream answer.",
                &[],
                d.inflight as f64,
            );
            let l = &d.resolver.upstream_latency;
            f.histogram(
                "dns_upstream_latency_seconds",
                "Forwarded queries: from the client's query to the upstream answer relayed.",
                &[],
                &l.cumulative(),
                (l.count, l.sum_micros as f64 / 1e6),
            );
            for (name, v) in [
                ("dns_malformed_frames_total", d.malformed_frames),
                ("dns_client_gone_total", d.client_gone),
                ("dns_clients_evicted_total", d.clients_evicted),
                ("dns_upstream_unreachable_total", d.upstream_unreachable),
                ("dns_tcp_connections_total", d.tcp_connections),
                ("dns_tcp_refused_total", d.tcp_refused),
                ("dns_tcp_forwarded_total", d.tcp_forwarded),
            ] {
                let help = format!(
                    "The embedded resolver: {}.",
                    name.trim_start_matches("dns_")
                        .trim_end_matches("_total")
                        .replace('_', " ")
                );
                f.counter(name, &help, &[], v);
            }
        }
        for ((method, result), n) in &self.requests {
            f.counter(
                "control_requests_total",
                "Control-socket requests, by method and result.",
                &[("method", *method), ("result", result)],
                *n,
            );
        }
        f.encode()
    }
}
