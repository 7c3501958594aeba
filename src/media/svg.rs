//! Small inline SVG charts (no JavaScript, no fonts beyond the system's sans-serif), for files and the report.

use std::fmt::Write;

/// One line of a chart.
pub struct Series<'a> {
    pub name: &'a str,
    pub points: Vec<(f64, f64)>,
    pub colour: &'a str,
}

/// Escapes text for SVG/HTML.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// A line chart of one or more series with their own y scales (each normalised to the plot's height and labelled with
/// its range in the legend), and an optional vertical marker at `marker.0` labelled `marker.1`.
pub fn line_chart(title: &str, x_label: &str, series: &[Series<'_>], marker: Option<(f64, &str)>) -> String {
    let (w, h, left, right, top, bottom) = (640.0, 360.0, 50.0, 20.0, 40.0, 70.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let (x0, x1) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)));
    let (x0, x1) = if x0.is_finite() && x1 > x0 { (x0, x1) } else { (0.0, 1.0) };
    let sx = |x: f64| left + (x - x0) / (x1 - x0) * pw;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" font-family="sans-serif" font-size="12"><rect width="{w}" height="{h}" fill="#fff"/><text x="{}" y="22" text-anchor="middle" font-size="14">{}</text>"##,
        w / 2.0,
        escape(title)
    );
    let _ = write!(svg, r##"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>"##);
    for i in 0..=4 {
        let x = x0 + (x1 - x0) * f64::from(i) / 4.0;
        let _ = write!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            sx(x),
            top + ph + 16.0,
            short(x)
        );
    }
    let _ = write!(
        svg,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
        left + pw / 2.0,
        top + ph + 34.0,
        escape(x_label)
    );
    for (i, s) in series.iter().enumerate() {
        let (y0, y1) = s.points.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.1), b.max(p.1)));
        let span = if y1 > y0 { y1 - y0 } else { 1.0 };
        let sy = |y: f64| top + ph - (y - y0) / span * ph;
        let path: Vec<String> =
            s.points.iter().filter(|p| p.1.is_finite()).map(|p| format!("{:.1},{:.1}", sx(p.0), sy(p.1))).collect();
        let _ = write!(
            svg,
            r##"<polyline fill="none" stroke="{}" stroke-width="1.5" points="{}"/>"##,
            escape(s.colour),
            path.join(" ")
        );
        let lx = left + i as f64 * pw / series.len() as f64;
        let _ = write!(
            svg,
            r##"<rect x="{lx:.1}" y="{:.1}" width="12" height="3" fill="{}"/><text x="{:.1}" y="{:.1}">{} ({} to {})</text>"##,
            h - 14.0,
            escape(s.colour),
            lx + 16.0,
            h - 10.0,
            escape(s.name),
            short(y0),
            short(y1)
        );
    }
    if let Some((x, label)) = marker {
        let _ = write!(
            svg,
            r##"<line x1="{0:.1}" x2="{0:.1}" y1="{top}" y2="{1:.1}" stroke="#d33" stroke-dasharray="4 3"/><text x="{2:.1}" y="{3:.1}" fill="#d33">{4}</text>"##,
            sx(x),
            top + ph,
            sx(x) + 4.0,
            top + 14.0,
            escape(label)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// A number in at most four significant digits.
fn short(v: f64) -> String {
    if v == 0.0 || (1e-3..1e5).contains(&v.abs()) {
        let s = format!("{v:.4}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        if s.len() > 7 { format!("{v:.1}") } else { s.to_string() }
    } else {
        format!("{v:.2e}")
    }
}
