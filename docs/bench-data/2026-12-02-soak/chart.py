#!/usr/bin/env python3
"""Draws a soak report's samples (shardcast-loadtest soak --json) as an SVG: the server's RSS,
its open descriptors and its largest internal tables over time, the warm-up shaded.

    chart.py soak.json out.svg [TITLE]
"""
import json
import sys

W, H, PAD, PANEL = 900, 790, 60, 200


def panel(out, top, title, series, t_max, warmup, unit=""):
    ys = [v for _, pts in series for _, v in pts]
    y_max = max(ys) * 1.1 if ys and max(ys) > 0 else 1
    x = lambda t: PAD + (W - 2 * PAD) * t / t_max
    y = lambda v: top + PANEL - PANEL * v / y_max
    out.append(f'<rect x="{PAD}" y="{top}" width="{x(warmup) - PAD:.1f}" height="{PANEL}" fill="#eee"/>')
    out.append(f'<rect x="{PAD}" y="{top}" width="{W - 2 * PAD}" height="{PANEL}" fill="none" stroke="#888"/>')
    out.append(f'<text x="{PAD}" y="{top - 8}" font-size="14">{title}</text>')
    for frac in (0, 0.5, 1):
        v = y_max * frac
        out.append(f'<text x="{PAD - 6}" y="{y(v) + 4:.1f}" font-size="11" text-anchor="end">{v:,.0f}{unit}</text>')
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    for i, (name, pts) in enumerate(series):
        c = colours[i % len(colours)]
        path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in pts)
        out.append(f'<polyline fill="none" stroke="{c}" stroke-width="1.2" points="{path}"/>')
        out.append(f'<text x="{W - PAD - 4}" y="{top + 16 + 14 * i}" font-size="11" text-anchor="end" fill="{c}">{name}</text>')


def main():
    report = json.load(open(sys.argv[1]))
    title = sys.argv[3] if len(sys.argv) > 3 else "soak"
    samples = report["samples"]
    t_max = max(s["t"] for s in samples) or 1
    warmup = report["warmup_s"]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{PAD}" y="24" font-size="16">{title}: {report["clients"]} clients, {report["duration_s"]:.0f} s, '
           f'{report["handshakes"]:,} handshakes (grey: warm-up)</text>']
    rss = [(s["t"], s["rss_kib"] / 1024) for s in samples if s.get("rss_kib") is not None]
    fds = [(s["t"], s["fds"]) for s in samples if s.get("fds") is not None]
    panel(out, 60, "server RSS (MiB)", [("RSS", rss)], t_max, warmup)
    panel(out, 60 + PANEL + 40, "open descriptors, clients connected",
          [("descriptors", fds), ("connected", [(s["t"], s["connected"]) for s in samples])], t_max, warmup)
    names = sorted({k for s in samples for k in s["tables"]},
                   key=lambda k: -max(s["tables"].get(k, 0) for s in samples))[:6]
    tables = [(n, [(s["t"], s["tables"].get(n, 0)) for s in samples]) for n in names]
    if tables:
        panel(out, 60 + 2 * (PANEL + 40), "internal tables (entries; the six largest)", tables, t_max, warmup)
    out.append(f'<text x="{W / 2}" y="{H - 12}" font-size="12" text-anchor="middle">seconds</text>')
    out.append("</svg>")
    open(sys.argv[2], "w").write("\n".join(out))


if __name__ == "__main__":
    main()
