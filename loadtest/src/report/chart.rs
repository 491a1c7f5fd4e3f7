//! Inline SVG line charts for the HTML report: axes, grids (linear, decades, or percentile
//! "nines"), series and legend, with their labels and escaping.

use std::fmt::Write as _;

use crate::coord::fmt_us;

pub(super) struct Series<'a> {
    pub(super) name: &'a str,
    pub(super) color: &'a str,
    pub(super) points: Vec<(f64, f64)>,
}

pub(super) fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A line chart; `log_y` uses decades; `nines_x` labels x as percentiles (x = -log10(1-q)).
pub(super) fn chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    log_y: bool,
    nines_x: bool,
    y_fmt: fn(f64) -> String,
) -> String {
    let (w, h, ml, mr, mt, mb) = (760.0, 320.0, 70.0, 130.0, 30.0, 45.0);
    let (pw, ph) = (w - ml - mr, h - mt - mb);
    let pts: Vec<(f64, f64)> = series.iter().flat_map(|s| s.points.iter().copied()).collect();
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(
        svg,
        r#"<text x="{}" y="18" font-size="14" font-weight="bold">{}</text>"#,
        ml,
        esc(title)
    );
    if pts.is_empty() {
        let _ =
            write!(svg, r#"<text x="{}" y="{}">no data</text></svg>"#, ml + 20.0, mt + ph / 2.0);
        return svg;
    }
    let ty = |v: f64| if log_y { v.max(1.0).log10() } else { v };
    let (mut x0, mut x1) =
        pts.iter().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (mut y0, mut y1) =
        pts.iter().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(ty(p.1)), b.max(ty(p.1))));
    if log_y {
        y0 = y0.floor();
        y1 = y1.ceil().max(y0 + 1.0);
    } else {
        y0 = 0.0;
        let step = nice_step(y1.max(1.0) / 5.0);
        y1 = ((y1 / step).ceil() * step).max(step);
    }
    if x1 <= x0 {
        x0 -= 0.5;
        x1 += 0.5;
    }
    let sx = |x: f64| ml + (x - x0) / (x1 - x0) * pw;
    let sy = |y: f64| mt + ph - (ty(y) - y0) / (y1 - y0) * ph;
    let _ = write!(
        svg,
        r##"<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="#fafafa" stroke="#999"/>"##
    );
    // Y grid.
    let yticks: Vec<f64> = if log_y {
        (y0 as i32..=y1 as i32).map(|e| 10f64.powi(e)).collect()
    } else {
        let step = nice_step(y1 / 5.0);
        (0..=(y1 / step).round() as i32).map(|i| f64::from(i) * step).collect()
    };
    for v in yticks {
        let y = sy(v);
        let _ = write!(
            svg,
            r##"<line x1="{ml}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            ml + pw,
            ml - 5.0,
            y + 4.0,
            esc(&y_fmt(v))
        );
    }
    // X grid.
    let xticks: Vec<(f64, String)> = if nines_x {
        (0..=x1.ceil() as i32)
            .map(|n| {
                let q = 100.0 * (1.0 - 10f64.powi(-n));
                (f64::from(n), format!("{}%", trim_float(q)))
            })
            .collect()
    } else {
        let step = nice_step((x1 - x0) / 8.0);
        let mut v = (x0 / step).ceil() * step;
        let mut out = Vec::new();
        while v <= x1 + 1e-9 {
            out.push((v, trim_float(v)));
            v += step;
        }
        out
    };
    for (v, label) in xticks {
        let x = sx(v);
        let _ = write!(
            svg,
            r##"<line x1="{x:.1}" y1="{mt}" x2="{x:.1}" y2="{:.1}" stroke="#eee"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            mt + ph,
            mt + ph + 15.0,
            esc(&label)
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        ml + pw / 2.0,
        h - 8.0,
        esc(x_label)
    );
    let _ = write!(
        svg,
        r#"<text x="14" y="{:.1}" text-anchor="middle" transform="rotate(-90 14 {:.1})">{}</text>"#,
        mt + ph / 2.0,
        mt + ph / 2.0,
        esc(y_label)
    );
    for (i, s) in series.iter().enumerate() {
        if s.points.is_empty() {
            continue;
        }
        let d: Vec<String> =
            s.points.iter().map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y))).collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{}" stroke-width="1.8" points="{}"/>"#,
            s.color,
            d.join(" ")
        );
        if s.points.len() == 1 {
            let (x, y) = s.points[0];
            let _ = write!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{}"/>"#,
                sx(x),
                sy(y),
                s.color
            );
        }
        let ly = mt + 10.0 + i as f64 * 16.0;
        let _ = write!(
            svg,
            r#"<rect x="{:.1}" y="{:.1}" width="12" height="3" fill="{}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            ml + pw + 10.0,
            ly - 3.0,
            s.color,
            ml + pw + 27.0,
            ly + 1.0,
            esc(s.name)
        );
    }
    svg.push_str("</svg>");
    svg
}

fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(raw.log10().floor());
    let n = raw / mag;
    let m = if n <= 1.0 {
        1.0
    } else if n <= 2.0 {
        2.0
    } else if n <= 5.0 {
        5.0
    } else {
        10.0
    };
    (m * mag).max(1.0)
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

pub(super) fn us_label(v: f64) -> String {
    fmt_us(v as u64)
}

pub(super) fn count_label(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_svg() {
        let s = chart(
            "t",
            "x",
            "y",
            &[Series { name: "a<b", color: "#000", points: vec![(0.0, 10.0), (1.0, 1000.0)] }],
            true,
            false,
            us_label,
        );
        assert!(s.starts_with("<svg") && s.ends_with("</svg>"));
        assert!(s.contains("a&lt;b"));
        let e = chart("t", "x", "y", &[], true, true, us_label);
        assert!(e.contains("no data"));
        assert_eq!(nice_step(0.7), 1.0);
        assert_eq!(nice_step(13.0), 20.0);
    }
}
