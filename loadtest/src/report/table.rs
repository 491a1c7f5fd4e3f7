//! The human table of a [`Report`], printed on stdout after every run and embedded in the
//! HTML report.

use std::fmt::Write as _;

use super::document::{ClusterReport, Report};
use crate::coord::fmt_us;
use crate::plan::Scenario;
use crate::stats::Percentiles;

fn mb(b: u64) -> String {
    format!("{:.1} MB", b as f64 / 1e6)
}

fn lat_line(p: &Percentiles) -> String {
    if p.count == 0 {
        return "-".into();
    }
    format!(
        "p50 {}  p90 {}  p99 {}  p99.9 {}  p99.99 {}  max {}  (n={})",
        fmt_us(p.p50),
        fmt_us(p.p90),
        fmt_us(p.p99),
        fmt_us(p.p999),
        fmt_us(p.p9999),
        fmt_us(p.max),
        p.count
    )
}

fn row(s: &mut String, k: &str, v: String) {
    let _ = writeln!(s, "  {k:<14} {v}");
}

/// `-1234` µs as `-1.23ms`, `+56µs`.
fn fmt_signed_us(us: i64) -> String {
    format!("{}{}", if us < 0 { "-" } else { "+" }, fmt_us(us.unsigned_abs()))
}

/// The cluster rows: broadcasts, local and remote latency, the hop, each server.
fn cluster_rows(s: &mut String, cl: &ClusterReport) {
    row(
        s,
        "cluster",
        format!(
            "{} servers; {} broadcasts ({:.1}/s) from the first",
            cl.servers.len(),
            cl.broadcasts,
            cl.broadcasts_per_sec
        ),
    );
    row(s, "  local", lat_line(&cl.local.latency_us));
    row(s, "  remote", lat_line(&cl.remote.latency_us));
    row(
        s,
        "  redis hop",
        format!(
            "p50 {}  p99 {}  (remote - local)",
            fmt_signed_us(cl.redis_hop_us.p50),
            fmt_signed_us(cl.redis_hop_us.p99)
        ),
    );
    for (i, sv) in cl.servers.iter().enumerate() {
        let d = &sv.deliveries;
        let cpu = match (sv.cpu_share_of_one_core, sv.cpu_us_per_broadcast) {
            (Some(share), Some(per)) => {
                format!("; cpu {:.0}% of a core, {per:.2} µs/broadcast", share * 100.0)
            }
            _ => String::new(),
        };
        row(
            s,
            &format!("  server {}", i + 1),
            format!(
                "{}{}: {} subscribers, received {} of {} (lost {}, duplicates {}, reordered {}){cpu}",
                sv.url,
                if sv.publishers { " (publishers)" } else { "" },
                d.subscribers,
                d.received,
                d.expected,
                d.lost,
                d.duplicates,
                d.reordered,
            ),
        );
    }
}

/// The human table.
pub fn table(r: &Report) -> String {
    let p = &r.config;
    let mut s = String::new();
    let what = match p.shape {
        Scenario::Fanout => format!(
            "{} subscribers{}, {} room(s), {} publisher(s)/room, {} msg/s per room, payload {} B",
            p.clients,
            if p.is_cluster() {
                format!(" over {} servers (publishers on the first)", p.servers.len())
            } else {
                String::new()
            },
            p.rooms,
            p.publishers,
            p.rate,
            p.payload
        ),
        Scenario::Lobby => format!(
            "{} clients in {} rooms, {} msg/s per room, payload {} B",
            p.clients, p.rooms, p.rate, p.payload
        ),
        Scenario::Echo => {
            format!("{} clients, {} round trips/s each, payload {} B", p.clients, p.rate, p.payload)
        }
        Scenario::Connect => format!(
            "{} attempts, {}, hold {} s",
            p.clients,
            p.connect_rate.map_or("all at once".to_owned(), |r| format!("{r}/s")),
            p.hold_s
        ),
        _ => format!("{} connections", p.clients),
    };
    let urls: Vec<&str> = p.servers.iter().map(|s| s.url.as_str()).collect();
    let _ = writeln!(s, "shardcast-loadtest {}  {}  {}", r.scenario, urls.join(" "), what);
    let _ = writeln!(
        s,
        "  duration {} s{}{}, workers {}, threads/process {}, cores available {}",
        p.duration_s,
        if r.ramp.is_some() { " per step" } else { "" },
        if p.warmup_s > 0.0 {
            format!(" after {} s of warm-up (not measured)", p.warmup_s)
        } else {
            String::new()
        },
        p.workers,
        p.threads,
        r.harness.cores_available
    );
    if let Some(cr) = &r.connect {
        row(
            &mut s,
            "attempts",
            format!(
                "{} of {} started ({} polling planned), {} succeeded, {} failed, {} not started",
                cr.attempts,
                cr.planned,
                r.connections.polling,
                cr.succeeded,
                cr.failed,
                cr.not_started
            ),
        );
        row(&mut s, "connects/s", format!("{:.1}", cr.connects_per_sec));
        row(
            &mut s,
            "closes",
            format!(
                "{} by the harness after --hold {} s ({:.1}/s), {} lost while held",
                cr.closed_by_harness, cr.hold_s, cr.disconnects_per_sec, cr.lost_while_held
            ),
        );
    } else {
        row(
            &mut s,
            "connections",
            format!(
                "{} of {} connected ({} polling), setup {:.2} s",
                r.connections.connected, r.connections.planned, r.connections.polling, r.setup_s
            ),
        );
    }
    if matches!(p.shape, Scenario::Fanout | Scenario::Lobby | Scenario::Echo) {
        row(
            &mut s,
            "sent",
            format!(
                "{} of {} scheduled ({:.1}/s), late sends {}",
                r.sent, r.scheduled, r.sent_per_sec, r.counters.late_sends
            ),
        );
    }
    row(&mut s, "expected", r.expected.to_string());
    if p.shape == Scenario::Idle {
        row(
            &mut s,
            "held",
            format!("{} to the end ({} pings answered)", r.received, r.counters.pings),
        );
    } else {
        row(&mut s, "received", format!("{} ({:.1}/s)", r.received, r.deliveries_per_sec));
    }
    row(&mut s, "lost", r.lost.to_string());
    row(&mut s, "duplicates", r.duplicates.to_string());
    row(&mut s, "reordered", r.reordered.to_string());
    let lat_name = match p.shape {
        Scenario::Echo => "rtt",
        Scenario::Connect => "from schedule",
        _ => "latency",
    };
    if p.shape != Scenario::Idle {
        row(&mut s, lat_name, lat_line(&r.latency_us));
    }
    row(&mut s, "handshake", lat_line(&r.connect_us));
    row(&mut s, "  eio open", lat_line(&r.eio_open_us));
    row(&mut s, "  ns connect", lat_line(&r.ns_connect_us));
    if r.publish_lag_us.count > 0 {
        row(&mut s, "publish lag", lat_line(&r.publish_lag_us));
        row(&mut s, "transit", lat_line(&r.transit_us));
    }
    if let Some(rc) = &r.recovery {
        row(
            &mut s,
            "recovery",
            format!(
                "{} cut, {} came back: {} recovered, {} got a new session; {} did not come back",
                rc.cuts, rc.attempts, rc.recovered, rc.refused, rc.missing
            ),
        );
        row(&mut s, "  to recover", lat_line(&rc.time_to_recover_us));
        if !rc.servers.is_empty() {
            row(
                &mut s,
                "  across",
                format!(
                    "{} came back on another server: {} recovered there",
                    rc.other_server, rc.recovered_on_other_server
                ),
            );
            for (i, sv) in rc.servers.iter().enumerate() {
                row(
                    &mut s,
                    &format!("  on server {}", i + 1),
                    format!(
                        "{} (from {}): {} came back, {} recovered; {}",
                        sv.url,
                        sv.from,
                        sv.attempts,
                        sv.recovered,
                        lat_line(&sv.time_to_recover_us)
                    ),
                );
            }
        }
    }
    if r.errors.is_empty() {
        row(&mut s, "errors", "none".into());
    } else {
        for (i, (k, v)) in r.errors.iter().enumerate() {
            row(&mut s, if i == 0 { "errors" } else { "" }, format!("{v} x {k}"));
        }
    }
    if let Some(rp) = &r.ramp {
        let _ = writeln!(
            s,
            "  ramp ({}; holds while p99 <= {} ms and loss <= {}):",
            rp.shape, rp.p99_objective_ms, rp.max_loss
        );
        for st in &rp.steps {
            let groups = st.cluster.as_ref().map_or(String::new(), |c| {
                format!(
                    "  local p99 {:>9} remote p99 {:>9}",
                    fmt_us(c.local.latency_us.p99),
                    fmt_us(c.remote.latency_us.p99)
                )
            });
            let _ = writeln!(
                s,
                "    rate {:>10.1}/s  recv {:>10}/{:<10} lost {:<8} p50 {:>9} p99 {:>9}{groups}  harness cpu {:>3.0}%  {}",
                st.rate,
                st.received,
                st.expected,
                st.lost,
                fmt_us(st.latency_us.p50),
                fmt_us(st.latency_us.p99),
                st.harness_cpu_share * 100.0,
                if st.held { "held" } else { "BROKE" }
            );
        }
        row(
            &mut s,
            "highest rate",
            rp.highest_rate_held
                .map_or("none held".to_owned(), |r| format!("{r} msg/s per room held")),
        );
    }
    if let Some(cl) = &r.cluster {
        cluster_rows(&mut s, cl);
    }
    if let Some(sv) = &r.server {
        row(
            &mut s,
            "server",
            format!(
                "rss {} -> {} connected (peak {}), {:.0} B/connection; cpu {:.0}% of a core, {:.2} µs/delivery{}",
                mb(sv.rss_baseline_bytes),
                mb(sv.rss_connected_bytes),
                mb(sv.rss_peak_bytes),
                sv.bytes_per_connection,
                sv.cpu_share_of_one_core * 100.0,
                sv.cpu_us_per_delivery,
                if r.cluster.is_some() { " (the first server)" } else { "" }
            ),
        );
    }
    row(
        &mut s,
        "harness",
        format!(
            "cpu {:.0}% of {} core(s), {:.2} µs/delivery{}",
            r.harness.cpu_share_of_available * 100.0,
            r.harness.cores_available,
            r.harness.cpu_us_per_delivery,
            if r.harness.bottleneck { "  ** HARNESS WAS THE BOTTLENECK **" } else { "" }
        ),
    );
    for n in &r.harness.notes {
        row(&mut s, "note", n.clone());
    }
    row(&mut s, "verdict", if r.clean { "clean".into() } else { "NOT clean (see above)".into() });
    s
}
