//! Printing results: JSON as the daemon sends it, or Docker-like tables; and the
//! commands that only show what the data plane has (port, conntrack, fdb, stats).

use super::*;

/// A result as JSON (through `Value`, so objects print with their keys sorted, as the
/// daemon sends them).
pub fn print_json<T: Serialize>(t: &T) {
    let v = serde_json::to_value(t).unwrap_or(Value::Null);
    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
}

/// A value as its JSON text, strings without quotes (enums as the daemon names them).
pub fn text<T: Serialize>(t: &T) -> String {
    match serde_json::to_value(t) {
        Ok(Value::String(s)) => s,
        Ok(Value::Null) | Err(_) => String::new(),
        Ok(o) => o.to_string(),
    }
}

/// Left-aligned columns separated by three spaces, like docker's tables.
pub fn print_table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.len());
        }
    }
    let line = |cells: Vec<String>| {
        let n = cells.len();
        let mut s = String::new();
        for (i, c) in cells.into_iter().enumerate() {
            if i + 1 == n {
                s.push_str(&c);
            } else {
                s.push_str(&format!("{:w$}   ", c, w = widths[i]));
            }
        }
        println!("{}", s.trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r);
    }
}

/// A list result: as JSON, or a table of one row per item.
pub fn print_list<T: Serialize>(
    items: &[T],
    json_out: bool,
    headers: &[&str],
    row: impl Fn(&T) -> Vec<String>,
) {
    if json_out {
        print_json(&items);
    } else {
        print_table(headers, items.iter().map(row).collect());
    }
}

/// `port SANDBOX`: its published ports, as `docker port` lists them.
pub fn port(c: &Client, sandbox: String, json_out: bool) -> Res<()> {
    let v: api::SandboxDetail = c.call("sandbox.inspect", &api::NameOnly { name: sandbox })?;
    if json_out {
        print_json(&v.ports);
    } else {
        // Like `docker port`: 80/tcp -> 0.0.0.0:8080
        for (k, list) in &v.ports {
            for b in list {
                // An IPv6 host address in brackets: 80/tcp -> [::]:8080
                if b.host_ip.contains(':') {
                    println!("{k} -> [{}]:{}", b.host_ip, b.host_port);
                } else {
                    println!("{k} -> {}:{}", b.host_ip, b.host_port);
                }
            }
        }
    }
    Ok(())
}

/// `conntrack`: the NAT's sessions.
pub fn conntrack(c: &Client, network: Option<String>, json_out: bool) -> Res<()> {
    let v: Vec<nat::SessionRow> = c.call("conntrack.get", &api::Conntrack { network })?;
    let t = |f: &nat::FlowTuple| format!("{} -> {}", f.src, f.dst);
    let headers = ["PROTO", "KIND", "ORIGINAL", "TRANSLATED", "STATE", "IDLE"];
    print_list(&v, json_out, &headers, |r| {
        vec![
            text(&r.proto),
            text(&r.kind),
            t(&r.original),
            t(&r.translated),
            text(&r.state),
            r.idle_secs.to_string(),
        ]
    });
    Ok(())
}

/// `fdb NETWORK`: the forwarding table, merged over the workers.
pub fn fdb(c: &Client, network: String, json_out: bool) -> Res<()> {
    let v: Vec<api::FdbRow> = c.call("fdb.get", &api::NameOnly { name: network })?;
    let headers = ["MAC", "PORT", "SANDBOX", "VTEP", "AGE", "FAST-PATH"];
    print_list(&v, json_out, &headers, |e| {
        let kind = if e.is_static {
            "static".into()
        } else {
            e.age.to_string()
        };
        vec![
            e.mac.clone(),
            e.port.clone(),
            e.sandbox.clone().unwrap_or_default(),
            e.vtep.clone().unwrap_or_default(),
            kind,
            if e.fast_path { "yes" } else { "" }.into(),
        ]
    });
    Ok(())
}

/// `cluster`: the store's health, then the hosts and the global networks.
pub fn cluster(c: &Client, json_out: bool) -> Res<()> {
    let v: api::ClusterInfo = c.call("cluster.info", &api::Empty {})?;
    if json_out {
        print_json(&v);
        return Ok(());
    }
    let s = &v.store;
    println!(
        "store {} {} (revision {}, lease {}, ttl {}s, connects {}){}",
        s.store,
        if s.connected {
            "connected"
        } else {
            "UNREACHABLE"
        },
        s.revision,
        s.lease.as_deref().unwrap_or("-"),
        s.ttl,
        s.connects,
        s.last_error
            .as_deref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default()
    );
    if s.foreign_keys > 0 {
        println!(
            "{} keys under the prefix were not written by vswitchd (left alone)",
            s.foreign_keys
        );
    }
    println!();
    print_list(
        &v.nodes,
        false,
        &["NODE", "VTEP", "LEASE", "ENDPOINTS", "STARTED"],
        |n| {
            vec![
                if n.this_host {
                    format!("{} *", n.name)
                } else {
                    n.name.clone()
                },
                n.vtep.clone(),
                n.lease.clone(),
                n.endpoints.to_string(),
                n.started.clone(),
            ]
        },
    );
    for u in &v.unpublished {
        println!(
            "NOT PUBLISHED: sandbox {} on {} ({}): {}; reconnect it for a new address",
            u.sandbox, u.network, u.ip, u.why
        );
    }
    if !v.networks.is_empty() {
        println!();
        print_list(
            &v.networks,
            false,
            &["NETWORK", "VNI", "SUBNET", "REMOTE ENDPOINTS", "HERE"],
            |n| {
                vec![
                    n.name.clone(),
                    n.vni.to_string(),
                    n.subnet.clone(),
                    n.remote_endpoints.to_string(),
                    n.refused
                        .clone()
                        .map(|r| format!("refused: {r}"))
                        .unwrap_or_else(|| "yes".into()),
                ]
            },
        );
    }
    Ok(())
}

/// `stats [PORT]`: ports, workers, the router and its VTEP.
pub fn stats(c: &Client, port: Option<String>, json_out: bool) -> Res<()> {
    let v: api::Stats = c.call("stats.get", &api::StatsGet { port })?;
    if json_out {
        print_json(&v);
        return Ok(());
    }
    let fast = |p: &api::PortStats, n: u64| {
        if p.fast_path {
            n.to_string()
        } else {
            "-".to_string()
        }
    };
    let rows = v
        .ports
        .iter()
        .map(|p| {
            let c = &p.counters;
            let drops: Vec<String> = c
                .drops
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(k, n)| format!("{k}={n}"))
                .collect();
            vec![
                p.name.clone(),
                p.sandbox.clone().unwrap_or_default(),
                p.network
                    .as_ref()
                    .map(|n| n.to_string())
                    .unwrap_or_default(),
                text(&p.backend),
                p.worker.to_string(),
                c.rx_packets.to_string(),
                c.rx_bytes.to_string(),
                c.tx_packets.to_string(),
                c.tx_bytes.to_string(),
                // Of those, what the in-kernel fast path forwarded.
                fast(p, c.fast_path_rx_packets),
                fast(p, c.fast_path_tx_packets),
                c.fdb_full.to_string(),
                drops.join(","),
            ]
        })
        .collect();
    print_table(
        &[
            "PORT", "SANDBOX", "NETWORK", "BACKEND", "WORKER", "RX-PKTS", "RX-BYTES", "TX-PKTS",
            "TX-BYTES", "FAST-RX", "FAST-TX", "FDB-FULL", "DROPS",
        ],
        rows,
    );
    println!();
    let rows = v
        .workers
        .iter()
        .map(|w| {
            vec![
                w.id.to_string(),
                w.core.map(|c| c.to_string()).unwrap_or_default(),
                w.ports.to_string(),
                w.rx_packets.to_string(),
                w.tx_packets.to_string(),
                w.busy_polls.to_string(),
                w.idle_polls.to_string(),
                w.sleeps.to_string(),
                w.cross_worker.to_string(),
                w.drops.to_string(),
            ]
        })
        .collect();
    print_table(
        &[
            "WORKER",
            "CORE",
            "PORTS",
            "RX-PKTS",
            "TX-PKTS",
            "BUSY-POLLS",
            "IDLE-POLLS",
            "SLEEPS",
            "CROSS-WORKER",
            "DROPS",
        ],
        rows,
    );
    // Frames each stage of each worker took in, in the stages' order.
    println!();
    let names = switch::stats::Stage::ALL.map(|s| s.name().replace('_', "-").to_uppercase());
    let mut header = vec!["STAGES"];
    header.extend(names.iter().map(String::as_str));
    let rows = v
        .workers
        .iter()
        .map(|w| {
            let mut row = vec![format!("worker {}", w.id)];
            row.extend(w.stages.rows().iter().map(|(_, n)| n.to_string()));
            row
        })
        .collect();
    print_table(&header, rows);
    if let Some(h) = &v.host_port {
        let c = &h.counters;
        println!();
        println!(
            "HOST PORT {} (host at {}): to_host={} from_host={} unknown_host={} ttl_exceeded={} answered={} ignored={}",
            h.ip, h.host_ips.first().map_or("-".to_string(), |a| a.to_string()),
            c.to_host, c.from_host, c.unknown_host, c.ttl_exceeded, c.answered, c.ignored,
        );
    }
    if let Some(router) = &v.router {
        let r = &router.0;
        println!();
        println!(
            "NAT: sessions={} in_kernel={} opened_in_kernel={} open_refused={}",
            r.sessions, r.fast_path_sessions, r.router.kernel_opened, r.router.kernel_open_refused,
        );
        let drops: Vec<String> = router
            .overlay_drops()
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        println!();
        println!(
            "VTEP {}: encapsulated={} decapsulated={} too_big={} drops: {}",
            r.vtep,
            r.overlay.encapsulated,
            r.overlay.decapsulated,
            r.router.tunnel_too_big,
            if drops.is_empty() {
                "none".to_string()
            } else {
                drops.join(",")
            }
        );
    }
    Ok(())
}
