//! The self-contained HTML report (`--report`): the table, the charts and the JSON document in
//! one file.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

use super::chart::{chart, count_label, esc, us_label, Series};
use super::document::{ClusterReport, Report, TimelineRow};
use super::table::table;

/// The self-contained HTML report. `latencies` are the run's merged latency histograms, by
/// name (see [`run_latencies`](super::run_latencies)): one line each in the distribution.
pub fn html(r: &Report, latencies: &[(&str, Histogram<u64>)]) -> String {
    const COLORS: [&str; 5] = ["#1f77b4", "#2ca02c", "#ff7f0e", "#d62728", "#7f3c8d"];
    let tl = &r.timeline;
    let pick = |f: fn(&TimelineRow) -> u64| -> Vec<(f64, f64)> {
        tl.iter().filter(|t| t.count > 0).map(|t| (t.t as f64, f(t) as f64)).collect()
    };
    let over_time = chart(
        "Latency percentiles per second",
        "seconds since the first phase started",
        "latency",
        &[
            Series { name: "p50", color: COLORS[0], points: pick(|t| t.p50) },
            Series { name: "p90", color: COLORS[1], points: pick(|t| t.p90) },
            Series { name: "p99", color: COLORS[2], points: pick(|t| t.p99) },
            Series { name: "p99.9", color: COLORS[3], points: pick(|t| t.p999) },
            Series { name: "max", color: COLORS[4], points: pick(|t| t.max) },
        ],
        true,
        false,
        us_label,
    );
    let spectrum = |h: &Histogram<u64>| {
        let mut points = Vec::new();
        if !h.is_empty() {
            for i in 0..=50 {
                let nines = f64::from(i) / 10.0;
                let q = 1.0 - 10f64.powf(-nines);
                points.push((nines, h.value_at_quantile(q) as f64));
            }
        }
        points
    };
    let spectra: Vec<Series> = latencies
        .iter()
        .zip(COLORS.iter().cycle())
        .map(|((name, h), color)| Series { name, color, points: spectrum(h) })
        .collect();
    let distribution = chart(
        "Latency distribution (percentile spectrum, whole run)",
        "percentile",
        "latency",
        &spectra,
        true,
        true,
        us_label,
    );
    let throughput = chart(
        "Messages per second",
        "seconds since the first phase started",
        "per second",
        &[
            Series {
                name: "sent",
                color: COLORS[1],
                points: tl.iter().map(|t| (t.t as f64, t.sent as f64)).collect(),
            },
            Series {
                name: "received",
                color: COLORS[0],
                points: tl.iter().map(|t| (t.t as f64, t.received as f64)).collect(),
            },
        ],
        false,
        false,
        count_label,
    );
    let ramp_chart = r.ramp.as_ref().map(|rp| {
        let mut series = vec![Series {
            name: "p99",
            color: COLORS[2],
            points: rp.steps.iter().map(|s| (s.rate, s.latency_us.p99 as f64)).collect(),
        }];
        if rp.steps.iter().any(|s| s.cluster.is_some()) {
            let group = |f: fn(&ClusterReport) -> u64| -> Vec<(f64, f64)> {
                rp.steps
                    .iter()
                    .filter_map(|s| Some((s.rate, f(s.cluster.as_ref()?) as f64)))
                    .collect()
            };
            series.push(Series {
                name: "local p99",
                color: COLORS[1],
                points: group(|c| c.local.latency_us.p99),
            });
            series.push(Series {
                name: "remote p99",
                color: COLORS[3],
                points: group(|c| c.remote.latency_us.p99),
            });
        }
        chart(
            "Ramp: p99 per step",
            "rate per room (msg/s)",
            "p99 latency",
            &series,
            true,
            false,
            us_label,
        )
    });
    let json = serde_json::to_string_pretty(r).unwrap_or_default();
    let mut h = String::new();
    let _ = write!(
        h,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>shardcast-loadtest {scenario}</title>
<style>
body {{ font-family: sans-serif; margin: 24px; color: #222; max-width: 980px; }}
pre {{ background: #f4f4f4; padding: 12px; overflow-x: auto; font-size: 12px; }}
.bad {{ color: #b00; font-weight: bold; }} .good {{ color: #070; font-weight: bold; }}
table {{ border-collapse: collapse; }} td, th {{ padding: 2px 10px; border-bottom: 1px solid #ddd; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
</style></head><body>
<h1>shardcast-loadtest: {scenario}</h1>
<p>Target <code>{url}</code>. Verdict: {verdict}</p>
<h2>Summary</h2>
<pre>{table}</pre>
<h2>Charts</h2>
{over_time}
{distribution}
{throughput}
{ramp}
<h2>Full result (the same JSON as --json)</h2>
<details><summary>show</summary><pre>{json}</pre></details>
</body></html>
"#,
        scenario = esc(&r.scenario),
        url = esc(&r.config.url),
        verdict = if r.clean {
            "<span class=\"good\">clean</span>"
        } else {
            "<span class=\"bad\">not clean</span>"
        },
        table = esc(&table(r)),
        ramp = ramp_chart.unwrap_or_default(),
        json = esc(&json),
    );
    h
}
