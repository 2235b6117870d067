//! Prometheus metrics (`vswitchd --metrics-addr`): the counters the workers already
//! keep, read once per scrape through the engine's snapshot calls (never per frame),
//! written as metric families and encoded by the `prometheus` crate's text encoder (the
//! exposition format Prometheus and `promtool check metrics` read).
//!
//! Names follow Prometheus conventions: `vswitch_` prefix, snake case, base units
//! (bytes, seconds), `_total` on counters, the subject's identity in labels
//! (`vswitch_port_rx_packets_total{port, network, sandbox}`).

use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};
use serde::Serialize;

/// Metric families being built for one scrape.
#[derive(Default)]
pub struct Families {
    list: Vec<MetricFamily>,
}

fn label_pairs(labels: &[(&str, &str)]) -> Vec<LabelPair> {
    labels
        .iter()
        .map(|(k, v)| {
            let mut l = LabelPair::default();
            l.set_name(k.to_string());
            l.set_value(v.to_string());
            l
        })
        .collect()
}

impl Families {
    fn family(&mut self, name: &str, help: &str, kind: MetricType) -> &mut MetricFamily {
        let full = format!("vswitch_{name}");
        let i = match self.list.iter().position(|f| f.name() == full) {
            Some(i) => i,
            None => {
                let mut f = MetricFamily::default();
                f.set_name(full);
                f.set_help(help.to_string());
                f.set_field_type(kind);
                self.list.push(f);
                self.list.len() - 1
            }
        };
        &mut self.list[i]
    }

    /// A counter sample (`name` ends in `_total`).
    pub fn counter(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: u64) {
        let mut c = Counter::default();
        c.set_value(value as f64);
        let mut m = Metric::default();
        m.set_label(label_pairs(labels));
        m.set_counter(c);
        self.family(name, help, MetricType::COUNTER)
            .mut_metric()
            .push(m);
    }

    pub fn gauge(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        let mut g = Gauge::default();
        g.set_value(value);
        let mut m = Metric::default();
        m.set_label(label_pairs(labels));
        m.set_gauge(g);
        self.family(name, help, MetricType::GAUGE)
            .mut_metric()
            .push(m);
    }

    /// A histogram from cumulative bucket counts (`(upper bound, count at or below)`),
    /// its total count and sum.
    pub fn histogram(
        &mut self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        buckets: &[(f64, u64)],
        (count, sum): (u64, f64),
    ) {
        let mut h = Histogram::default();
        h.set_sample_count(count);
        h.set_sample_sum(sum);
        let bs: Vec<Bucket> = buckets
            .iter()
            .map(|(le, n)| {
                let mut b = Bucket::default();
                b.set_upper_bound(*le);
                b.set_cumulative_count(*n);
                b
            })
            .collect();
        h.set_bucket(bs);
        let mut m = Metric::default();
        m.set_label(label_pairs(labels));
        m.set_histogram(h);
        self.family(name, help, MetricType::HISTOGRAM)
            .mut_metric()
            .push(m);
    }

    /// Every numeric field of `counters` (a counters struct as `stats` shows it) as a
    /// counter `{prefix}_{field}_total`; `gauges` name the fields that are levels, not
    /// counts (`{prefix}_{field}`).
    pub fn counters_of<T: Serialize>(
        &mut self,
        prefix: &str,
        what: &str,
        counters: &T,
        gauges: &[&str],
        labels: &[(&str, &str)],
    ) {
        let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(counters) else {
            return;
        };
        for (field, v) in fields {
            let Some(n) = v.as_u64() else { continue };
            let field = field.replace(['-', '.'], "_");
            if gauges.contains(&field.as_str()) {
                let help = format!("{what}: {}", field.replace('_', " "));
                self.gauge(&format!("{prefix}_{field}"), &help, labels, n as f64);
            } else {
                let help = format!("{what}: {}", field.replace('_', " "));
                self.counter(&format!("{prefix}_{field}_total"), &help, labels, n);
            }
        }
    }

    /// The text exposition format.
    pub fn encode(self) -> Result<Vec<u8>, String> {
        use prometheus::Encoder;
        let mut out = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&self.list, &mut out)
            .map_err(|e| e.to_string())?;
        Ok(out)
    }
}

/// The media type of what [`Families::encode`] writes.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct C {
        sent: u64,
        in_flight: u64,
        name: &'static str,
    }

    #[test]
    fn families_encode_as_prometheus_text() {
        let mut f = Families::default();
        f.counter(
            "port_rx_packets_total",
            "Frames received.",
            &[("port", "a")],
            3,
        );
        f.counter(
            "port_rx_packets_total",
            "Frames received.",
            &[("port", "b")],
            4,
        );
        f.counters_of(
            "dns",
            "The resolver",
            &C {
                sent: 7,
                in_flight: 2,
                name: "x",
            },
            &["in_flight"],
            &[],
        );
        f.histogram(
            "dns_latency_seconds",
            "Latency.",
            &[],
            &[(0.001, 1), (0.01, 3)],
            (4, 0.5),
        );
        let text = String::from_utf8(f.encode().unwrap()).unwrap();
        for line in [
            "# TYPE vswitch_port_rx_packets_total counter",
            "vswitch_port_rx_packets_total{port=\"a\"} 3",
            "vswitch_port_rx_packets_total{port=\"b\"} 4",
            "vswitch_dns_sent_total 7",
            "# TYPE vswitch_dns_in_flight gauge",
            "vswitch_dns_in_flight 2",
            "vswitch_dns_latency_seconds_bucket{le=\"0.01\"} 3",
            "vswitch_dns_latency_seconds_bucket{le=\"+Inf\"} 4",
            "vswitch_dns_latency_seconds_count 4",
        ] {
            assert!(text.contains(line), "{line:?} not in:\n{text}");
        }
        assert!(!text.contains("name"), "strings are not metrics");
    }
}
