//! Small inline SVG charts (no JavaScript, no fonts beyond the system's sans-serif), for files and the report.

use std::collections::BTreeMap;
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

/// Average advance of a sans-serif character, in em: a generous estimate (most glyphs of the system's sans-serif are
/// narrower), so a caption placed by it stays inside its figure.
const EM_PER_CHAR: f64 = 0.6;

/// A caption's lines and where each is centred, so that none runs past `bounds` at `font_size`: one line centred on
/// `centre` where it fits, moved inwards where it would cross a bound; split at the space nearest the middle (as many
/// times as it takes) where it is wider than the bounds.
fn caption_lines(text: &str, centre: f64, bounds: (f64, f64), font_size: f64) -> Vec<(f64, String)> {
    let width = |t: &str| t.chars().count() as f64 * font_size * EM_PER_CHAR;
    let room = bounds.1 - bounds.0;
    let mut lines = vec![text.to_string()];
    while let Some(k) = lines.iter().position(|l| width(l) > room && l.contains(' ')) {
        let line = lines.remove(k);
        let middle = line.chars().count() / 2;
        let split = line
            .char_indices()
            .filter(|&(_, c)| c == ' ')
            .map(|(b, _)| b)
            .min_by_key(|&b| line[..b].chars().count().abs_diff(middle))
            .expect("the line has a space");
        lines.insert(k, line[split + 1..].to_string());
        lines.insert(k, line[..split].to_string());
    }
    lines
        .into_iter()
        .map(|l| {
            let half = (width(&l) / 2.0).min(room / 2.0);
            (centre.clamp(bounds.0 + half, bounds.1 - half), l)
        })
        .collect()
}

/// Writes [`caption_lines`] centred from height `y` down, `font_size × 1.25` apart; returns the height its lines
/// beyond the first take, which the figure grows by.
fn write_caption(svg: &mut String, text: &str, centre: f64, y: f64, bounds: (f64, f64), font_size: f64) -> f64 {
    let lines = caption_lines(text, centre, bounds, font_size);
    let spacing = font_size * 1.25;
    for (i, (x, line)) in lines.iter().enumerate() {
        let _ = write!(
            svg,
            r##"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            y + i as f64 * spacing,
            escape(line)
        );
    }
    spacing * (lines.len() - 1) as f64
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

/// One box of a drawn layer graph: its name, a caption (its kind and output shape) and the earlier boxes it takes.
pub struct Node<'a> {
    pub name: &'a str,
    pub caption: String,
    pub inputs: Vec<usize>,
}

/// A network's layers drawn as its graph, one box per row in declared order (a topological order). An input from
/// the row just above is a short arrow down; any other (a skip connection, a branch) runs down a lane right of the
/// boxes, lanes given so that no two edges whose rows overlap share one.
pub fn layer_graph(title: &str, nodes: &[Node<'_>]) -> String {
    let (row, box_h, box_w, left, top, lane_gap) = (26.0, 20.0, 360.0, 10.0, 30.0, 12.0);
    let mid = |i: usize| top + i as f64 * row + box_h / 2.0;
    // Edges that skip rows, shortest first, each in the first lane free over its rows.
    let mut long: Vec<(usize, usize)> = nodes
        .iter()
        .enumerate()
        .flat_map(|(j, n)| n.inputs.iter().filter(move |&&i| i + 1 != j).map(move |&i| (i, j)))
        .collect();
    long.sort_by_key(|&(i, j)| (j - i, i, j));
    let mut lanes: Vec<Vec<(usize, usize)>> = Vec::new();
    let mut placed = Vec::new();
    for (i, j) in long {
        // Edges that meet at a row take different lanes too, or their lines would join there.
        let free = |lane: &Vec<(usize, usize)>| lane.iter().all(|&(a, b)| b < i || j < a);
        let lane = match lanes.iter().position(free) {
            Some(l) => l,
            None => {
                lanes.push(Vec::new());
                lanes.len() - 1
            }
        };
        lanes[lane].push((i, j));
        placed.push((i, j, lane));
    }
    let right = left + box_w;
    let (w, h) = (right + lane_gap * (lanes.len() as f64 + 1.0) + 10.0, top + nodes.len() as f64 * row + 10.0);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" font-family="sans-serif" font-size="11" role="img" aria-label="{0}"><rect width="{w}" height="{h}" fill="#fff"/><defs><marker id="arrow" viewBox="0 0 6 6" refX="6" refY="3" markerWidth="6" markerHeight="6" orient="auto"><path d="M0,0 L6,3 L0,6 z" fill="#555"/></marker></defs><text x="{left}" y="18" font-size="13">{0}</text>"##,
        escape(title)
    );
    for (i, n) in nodes.iter().enumerate() {
        let y = top + i as f64 * row;
        let _ = write!(
            svg,
            r##"<rect x="{left}" y="{y}" width="{box_w}" height="{box_h}" rx="3" fill="#eef3fb" stroke="#7a8fb3"/><text x="{:.1}" y="{:.1}">{}</text><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#555">{}</text>"##,
            left + 6.0,
            y + 14.0,
            escape(n.name),
            right - 6.0,
            y + 14.0,
            escape(&n.caption)
        );
        if n.inputs.contains(&(i.wrapping_sub(1))) {
            let x = left + box_w / 2.0;
            let _ = write!(
                svg,
                r##"<line x1="{x}" y1="{:.1}" x2="{x}" y2="{y:.1}" stroke="#555" marker-end="url(#arrow)"/>"##,
                y - (row - box_h)
            );
        }
    }
    for (i, j, lane) in placed {
        let x = right + lane_gap * (lane as f64 + 1.0);
        let _ = write!(
            svg,
            r##"<path d="M{right},{:.1} H{x} V{:.1} H{right}" fill="none" stroke="#555" marker-end="url(#arrow)"/>"##,
            mid(i) - 3.0,
            mid(j) + 3.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// Tick positions from `lo` to `hi`: multiples of 1, 2 or 5 × 10^k, about five of them.
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let raw = (hi - lo) / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * magnitude).find(|s| *s >= raw).unwrap_or(magnitude * 10.0);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|i| i as f64 * step).collect()
}

/// A horizontal axis from `span.0` to `span.1` at height `axis_y`: a tick, a grid line up to `grid_top` and a label
/// at each `(x, label)`.
fn x_axis(svg: &mut String, span: (f64, f64), axis_y: f64, grid_top: f64, ticks: impl Iterator<Item = (f64, String)>) {
    let (left, right) = span;
    let _ = write!(svg, r##"<line x1="{left}" x2="{right:.1}" y1="{axis_y:.1}" y2="{axis_y:.1}" stroke="#333"/>"##);
    for (tx, label) in ticks {
        let _ = write!(
            svg,
            r##"<line x1="{tx:.1}" x2="{tx:.1}" y1="{axis_y:.1}" y2="{:.1}" stroke="#333"/><line x1="{tx:.1}" x2="{tx:.1}" y1="{grid_top}" y2="{axis_y:.1}" stroke="#eee"/><text x="{tx:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
            axis_y + 5.0,
            axis_y + 18.0,
        );
    }
}

/// Scores per strategy on one split (`groups`: each strategy's scores, one per run): each run a dot, each strategy's mean a bar, the original a dashed line, on an
/// axis with ticks and its unit (percent for accuracy, pixels for a keypoint error).
pub fn strip_plot(groups: &BTreeMap<String, Vec<f64>>, original: f64, split: &str, accuracy: bool) -> String {
    let all: Vec<f64> = groups.values().flatten().copied().chain([original]).collect();
    let (lo, hi) = all.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    let pad = ((hi - lo) * 0.1).max(1e-3);
    let (lo, hi) = (lo - pad, hi + pad);
    let (w, row, left, right) = (640.0, 34.0, 120.0, 24.0);
    let axis_y = row * (groups.len() as f64 + 0.6);
    let title = if accuracy { "accuracy (%)" } else { "mean keypoint error (px, lower is better)" };
    let mut caption = String::new();
    let extra = write_caption(
        &mut caption,
        &format!("{title} on split {split}; dot: one retrained model, red bar: mean"),
        left + (w - left - right) / 2.0,
        axis_y + 38.0,
        (4.0, w - 4.0),
        12.0,
    );
    let h = axis_y + 62.0 + extra;
    let x = |v: f64| left + (v - lo) / (hi - lo) * (w - left - right);
    let label = |v: f64| if accuracy { format!("{:.1}", v * 100.0) } else { format!("{v:.2}") };
    let mut svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" font-family="sans-serif" font-size="12" role="img" aria-label="Scores per retraining strategy on split {split}"><rect width="{w}" height="{h}" fill="#fff"/>"##,
        split = escape(split)
    );
    // The axis, its ticks with their values, and its title with the unit.
    x_axis(&mut svg, (left, w - right), axis_y, 8.0, ticks(lo, hi).into_iter().map(|t| (x(t), label(t))));
    svg.push_str(&caption);
    let ox = x(original);
    svg.push_str(&format!(
        r##"<line x1="{ox:.1}" x2="{ox:.1}" y1="8" y2="{axis_y:.1}" stroke="#777" stroke-dasharray="4 3"/><text x="{ox:.1}" y="{:.1}" text-anchor="middle" fill="#555">original {}</text>"##,
        axis_y + 54.0 + extra,
        label(original)
    ));
    for (i, (name, values)) in groups.iter().enumerate() {
        let y = row * (i as f64 + 0.6);
        svg.push_str(&format!(
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end">{} ({} runs)</text>"##,
            left - 8.0,
            y + 4.0,
            escape(name),
            values.len()
        ));
        for v in values {
            svg.push_str(&format!(
                r##"<circle cx="{:.1}" cy="{y:.1}" r="4" fill="#1f5fa8" fill-opacity="0.7"/>"##,
                x(*v)
            ));
        }
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        svg.push_str(&format!(
            r##"<line x1="{0:.1}" x2="{0:.1}" y1="{1:.1}" y2="{2:.1}" stroke="#d33" stroke-width="2"/>"##,
            x(mean),
            y - 10.0,
            y + 10.0
        ));
    }
    svg.push_str("</svg>");
    svg
}

/// One row of an [`interval_plot`]: a label, a value with its interval, and the colour of its mark.
pub struct IntervalRow<'a> {
    pub label: String,
    pub value: f64,
    pub lo: Option<f64>,
    pub hi: Option<f64>,
    pub colour: &'a str,
}

/// A forest plot: one row per label, its value a dot and its interval a bar, on one axis with ticks (percent when
/// `percent`, else the values as they are), and a vertical line at `marker` (a criterion) with its caption.
pub fn interval_plot(title: &str, rows: &[IntervalRow<'_>], marker: Option<(f64, &str)>, percent: bool) -> String {
    let values = rows.iter().flat_map(|r| [Some(r.value), r.lo, r.hi]).flatten();
    let (lo, hi) =
        values.chain(marker.map(|m| m.0)).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    let pad = ((hi - lo) * 0.08).max(1e-3);
    let (lo, hi) = if percent { ((lo - pad).max(0.0), (hi + pad).min(1.0)) } else { (lo - pad, hi + pad) };
    let (w, row, left, right) = (640.0, 26.0, 210.0, 24.0);
    let axis_y = row * rows.len() as f64 + 14.0;
    let x = |v: f64| left + (v - lo) / (hi - lo).max(1e-9) * (w - left - right);
    let label = |v: f64| if percent { format!("{:.0}", v * 100.0) } else { format!("{v:.2}") };
    let mut caption = String::new();
    let extra =
        write_caption(&mut caption, title, left + (w - left - right) / 2.0, axis_y + 36.0, (4.0, w - 4.0), 12.0);
    let h = axis_y + 46.0 + extra;
    let mut svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" font-family="sans-serif" font-size="12" role="img" aria-label="{}"><rect width="{w}" height="{h}" fill="#fff"/>"##,
        escape(title)
    );
    x_axis(&mut svg, (left, w - right), axis_y, 4.0, ticks(lo, hi).into_iter().map(|t| (x(t), label(t))));
    svg.push_str(&caption);
    if let Some((m, caption)) = marker {
        let mx = x(m);
        svg.push_str(&format!(
            r##"<line x1="{mx:.1}" x2="{mx:.1}" y1="4" y2="{axis_y:.1}" stroke="#a22" stroke-dasharray="5 3"/><text x="{:.1}" y="12" fill="#a22" text-anchor="end">{}</text>"##,
            mx - 4.0,
            escape(caption)
        ));
    }
    for (i, r) in rows.iter().enumerate() {
        let y = row * i as f64 + row / 2.0 + 4.0;
        svg.push_str(&format!(
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            left - 8.0,
            y + 4.0,
            escape(&r.label)
        ));
        if let (Some(a), Some(b)) = (r.lo, r.hi) {
            svg.push_str(&format!(
                r##"<line x1="{:.1}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="{c}" stroke-width="2"/><line x1="{:.1}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="{c}"/><line x1="{:.1}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="{c}"/>"##,
                x(a),
                x(b),
                x(a),
                x(a),
                y - 5.0,
                y + 5.0,
                x(b),
                x(b),
                y - 5.0,
                y + 5.0,
                c = r.colour
            ));
        }
        svg.push_str(&format!(
            r##"<circle cx="{:.1}" cy="{y:.1}" r="4.5" fill="{}"><title>{}: {}</title></circle>"##,
            x(r.value),
            r.colour,
            escape(&r.label),
            label(r.value)
        ));
    }
    svg.push_str("</svg>");
    svg
}

/// One point of a [`scatter_map`]: where it lies, its group (a colour), its hover text, and whether it is its
/// group's representative (drawn larger, ringed and numbered).
pub struct MapPoint {
    pub x: f64,
    pub y: f64,
    pub group: usize,
    pub text: String,
    pub representative: bool,
}

/// Colours for groups, distinguishable in print and by most colour-blind readers (Okabe and Ito's, then darker
/// shades); groups beyond them repeat the colours, their numbers at the representatives telling them apart.
const GROUP_COLOURS: [&str; 12] = [
    "#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#000000", "#7f3c8d", "#11a579",
    "#3969ac", "#e73f74",
];

/// Thumbnails for a [`scatter_map`]: one PNG holding a `tile_w × tile_h` tile per point, in the points' order,
/// `columns` tiles to a row.
pub struct Atlas {
    pub png: Vec<u8>,
    pub tile_w: usize,
    pub tile_h: usize,
    pub columns: usize,
}

/// The longer side, in the map's pixels, at which a point's thumbnail is shown.
const THUMB: f64 = 112.0;

/// A map of points coloured by group, each with its hover text (`<title>`), its group's representative ringed and
/// numbered, on one scale for both axes (points in the map's own units, e.g. the coordinates of classical MDS).
///
/// With an `atlas`, hovering a point shows its image beside it: the atlas is embedded once and each point shows
/// its tile through a nested `<svg>` whose view box is that tile. The dots are drawn first and catch no pointer;
/// above them each point has a transparent hit circle and its hidden thumbnail, so the one shown is painted over
/// every dot (the hit circles drawn after it are transparent). CSS only, no script; nothing shows in print.
pub fn scatter_map(title: &str, points: &[MapPoint], atlas: Option<&Atlas>) -> String {
    let (w, h, pad, top): (f64, f64, f64, f64) = (640.0, 560.0, 24.0, 36.0);
    let range = |f: &dyn Fn(&MapPoint) -> f64| {
        points.iter().map(f).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)))
    };
    let ((x0, x1), (y0, y1)) = (range(&|p| p.x), range(&|p| p.y));
    // One scale for both axes, so that distances on the map are comparable in every direction.
    let span = (x1 - x0).max(y1 - y0).max(1e-12);
    let (size_x, size_y) = (w - 2.0 * pad, h - top - pad);
    let scale = size_x.min(size_y) / span;
    let (cx, cy) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
    let sx = |v: f64| pad + size_x / 2.0 + (v - cx) * scale;
    let sy = |v: f64| top + size_y / 2.0 - (v - cy) * scale;
    let mut svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" font-family="sans-serif" font-size="12" role="img" aria-label="{t}"><rect width="{w}" height="{h}" fill="#fff"/><text x="{:.1}" y="22" text-anchor="middle" font-size="14">{t}</text><rect x="{pad}" y="{top}" width="{size_x}" height="{size_y}" fill="none" stroke="#ccc"/>"##,
        w / 2.0,
        t = escape(title)
    );
    let colour = |g: usize| GROUP_COLOURS[g % GROUP_COLOURS.len()];
    // Without thumbnails the dots themselves carry the hover text.
    let title_of =
        |p: &MapPoint| if atlas.is_none() { format!("<title>{}</title>", escape(&p.text)) } else { String::new() };
    let mut dots = String::new();
    for p in points.iter().filter(|p| !p.representative) {
        let _ = write!(
            dots,
            r##"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{}" fill-opacity="0.75">{}</circle>"##,
            sx(p.x),
            sy(p.y),
            colour(p.group),
            title_of(p)
        );
    }
    // Representatives last, on top.
    for p in points.iter().filter(|p| p.representative) {
        let (x, y) = (sx(p.x), sy(p.y));
        let _ = write!(
            dots,
            r##"<circle cx="{x:.1}" cy="{y:.1}" r="7" fill="{}" stroke="#000" stroke-width="1.5">{}</circle><text x="{:.1}" y="{:.1}" font-weight="bold" paint-order="stroke" stroke="#fff" stroke-width="3">{}</text>"##,
            colour(p.group),
            title_of(p),
            x + 9.0,
            y + 4.0,
            p.group
        );
    }
    let Some(atlas) = atlas else {
        svg.push_str(&dots);
        svg.push_str("</svg>");
        return svg;
    };
    let data = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &atlas.png);
    let rows = points.len().div_ceil(atlas.columns.max(1));
    let (aw, ah) = (atlas.columns * atlas.tile_w, rows * atlas.tile_h);
    let _ = write!(
        svg,
        r##"<style>.map-dots{{pointer-events:none}}.map-pt .map-thumb{{visibility:hidden}}.map-pt:hover .map-thumb{{visibility:visible}}</style><defs><image id="map-atlas" width="{aw}" height="{ah}" style="image-rendering:pixelated" href="data:image/png;base64,{data}"/></defs><g class="map-dots">{dots}</g>"##
    );
    let zoom = THUMB / atlas.tile_w.max(atlas.tile_h).max(1) as f64;
    let (tw, th) = (atlas.tile_w as f64 * zoom, atlas.tile_h as f64 * zoom);
    for (i, p) in points.iter().enumerate() {
        let (x, y) = (sx(p.x), sy(p.y));
        // Beside the point, kept inside the frame.
        let left = if x + 10.0 + tw <= w - pad { x + 10.0 } else { x - 10.0 - tw };
        let up = (y - th / 2.0).clamp(top, h - pad - th);
        let (ox, oy) = ((i % atlas.columns) * atlas.tile_w, (i / atlas.columns) * atlas.tile_h);
        let _ = write!(
            svg,
            r##"<g class="map-pt"><circle cx="{x:.1}" cy="{y:.1}" r="{}" fill="transparent"><title>{}</title></circle><svg class="map-thumb" x="{left:.1}" y="{up:.1}" width="{tw:.1}" height="{th:.1}" viewBox="{ox} {oy} {} {}"><use href="#map-atlas"/><rect x="{ox}" y="{oy}" width="{}" height="{}" fill="none" stroke="{}" stroke-width="{:.2}"/></svg></g>"##,
            if p.representative { 7 } else { 4 },
            escape(&p.text),
            atlas.tile_w,
            atlas.tile_h,
            atlas.tile_w,
            atlas.tile_h,
            colour(p.group),
            3.0 / zoom
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skip_connection_runs_in_a_lane_and_overlapping_ones_in_different_lanes() {
        let node = |name, inputs: Vec<usize>| Node { name, caption: String::new(), inputs };
        // 0 → 1 → 2 → 3 (= 2 + 0) → 4 (= 3 + 1): the two skips overlap over rows 1–3.
        let nodes = [
            node("input", vec![]),
            node("a", vec![0]),
            node("b", vec![1]),
            node("c", vec![2, 0]),
            node("d", vec![3, 1]),
        ];
        let svg = layer_graph("g", &nodes);
        assert_eq!(svg.matches("<rect x=").count(), 5, "one box per layer");
        assert_eq!(svg.matches("<line ").count(), 4, "an arrow from each row above");
        let lanes: Vec<&str> = svg.match_indices("<path d=\"M370").map(|(k, _)| &svg[k..k + 40]).collect();
        assert_eq!(lanes.len(), 2, "{svg}");
        assert_ne!(lanes[0].split(' ').nth(2), lanes[1].split(' ').nth(2), "overlapping skips share a lane: {lanes:?}");
        // A name that is not XML stays text.
        assert!(layer_graph("<g>", &[node("a<b", vec![])]).contains("a&lt;b"));
    }

    #[test]
    fn a_forest_plot_draws_a_dot_and_an_interval_per_row_and_the_criterion() {
        let row = |label: &str, value: f64, lo: Option<f64>| IntervalRow {
            label: label.into(),
            value,
            lo,
            hi: lo.map(|l| 2.0 * value - l),
            colour: "#123",
        };
        let svg = interval_plot(
            "accuracy <held out>",
            &[row("original", 0.8, Some(0.77)), row("hudd & co", 0.91, Some(0.9)), row("x", 0.5, None)],
            Some((0.95, "accuracy >= 0.95")),
            true,
        );
        assert_eq!(svg.matches("<circle").count(), 3);
        // Three lines per interval (the bar and its two caps); the row without one has none.
        assert_eq!(svg.matches(r##"stroke="#123""##).count(), 6);
        assert!(svg.contains("hudd &amp; co") && svg.contains("accuracy &lt;held out&gt;"), "{svg}");
        assert!(svg.contains("accuracy &gt;= 0.95") && svg.contains("stroke-dasharray=\"5 3\""), "{svg}");
    }

    /// Each `<text … text-anchor="middle">` of an SVG: its x, y and its text's estimated half width at 12 px.
    fn centred_texts(svg: &str) -> Vec<(f64, f64, f64)> {
        // The attributes follow "<text " (split off), so each is found after a space.
        let attr = |t: &str, name: &str| -> f64 {
            let t = format!(" {t}");
            let r = &t[t.find(&format!(" {name}=\"")).unwrap() + name.len() + 3..];
            r[..r.find('"').unwrap()].parse().unwrap()
        };
        svg.split("<text ")
            .skip(1)
            .filter(|t| t[..t.find('>').unwrap()].contains(r#"text-anchor="middle""#))
            .map(|t| {
                let text = &t[t.find('>').unwrap() + 1..t.find("</text>").unwrap()];
                (attr(t, "x"), attr(t, "y"), text.chars().count() as f64 * 12.0 * EM_PER_CHAR / 2.0)
            })
            .collect()
    }

    #[test]
    fn a_caption_wider_than_its_figure_wraps_and_every_line_stays_inside_it() {
        let long = "failure rate (%) on fresh images inside and outside the rule, exact 95% intervals, and more words";
        let row = IntervalRow { label: "a".into(), value: 0.3, lo: Some(0.2), hi: Some(0.4), colour: "#123" };
        let one = interval_plot("short caption", std::slice::from_ref(&row), None, true);
        let two = interval_plot(long, std::slice::from_ref(&row), None, true);
        let height = |svg: &str| -> f64 {
            let r = &svg[svg.find("height=\"").unwrap() + 8..];
            r[..r.find('"').unwrap()].parse().unwrap()
        };
        assert_eq!(height(&two), height(&one) + 15.0, "a second caption line grows the figure by one line");
        let lines: Vec<(f64, f64, f64)> = centred_texts(&two).into_iter().filter(|t| t.1 > 70.0).collect();
        assert_eq!(lines.len(), 2, "{two}");
        for (x, y, half) in &lines {
            assert!(x - half >= 0.0 && x + half <= 640.0 && *y < height(&two), "line at ({x}, {y}) ±{half}: {two}");
        }
        // Nothing lost, in order; a short caption stays centred on the plot area (210..616).
        let words = |svg: &str| {
            svg.split("<text ")
                .skip(1)
                .map(|t| t[t.find('>').unwrap() + 1..t.find("</text>").unwrap()].to_string())
                .collect::<Vec<_>>()
        };
        assert!(words(&two).iter().any(|w| long.starts_with(w.as_str())), "{two}");
        assert!(words(&two).iter().any(|w| long.ends_with(w.as_str())), "{two}");
        assert!(centred_texts(&one).iter().any(|t| (t.0 - 413.0).abs() < 0.1), "{one}");
        // A word longer than the figure cannot be split: its line is kept whole, centred.
        assert_eq!(caption_lines(&"x".repeat(200), 100.0, (0.0, 640.0), 12.0), vec![(320.0, "x".repeat(200))]);
        // The keypoint error's caption, the longest the strip plot writes, fits too.
        let groups = BTreeMap::from([("hudd".to_string(), vec![0.7, 0.71])]);
        for (x, _, half) in centred_texts(&strip_plot(&groups, 0.9, "holdout", false)) {
            assert!(x - half >= 0.0 && x + half <= 640.0, "({x}) ±{half}");
        }
    }

    #[test]
    fn a_map_draws_every_point_with_its_hover_text_and_numbers_the_representatives() {
        let point = |x: f64, group: usize, representative: bool| MapPoint {
            x,
            y: x * 0.5,
            group,
            text: format!("test-<{x}> · cluster {group}"),
            representative,
        };
        let points = [point(0.0, 1, true), point(1.0, 1, false), point(4.0, 2, true)];
        let svg = scatter_map("map", &points, None);
        assert_eq!(svg.matches("<circle").count(), 3);
        assert_eq!(svg.matches("<title>").count(), 3);
        assert!(svg.contains("test-&lt;1&gt; · cluster 1"), "hover text escaped: {svg}");
        // Representatives ringed and numbered with their group.
        assert_eq!(svg.matches(r##"stroke="#000""##).count(), 2);
        assert!(svg.contains(">1</text>") && svg.contains(">2</text>"), "{svg}");
        // One scale for both axes: the points' x span (4) maps to twice their y span (2).
        let cx: Vec<f64> = svg.split("cx=\"").skip(1).map(|r| r[..r.find('"').unwrap()].parse().unwrap()).collect();
        let cy: Vec<f64> = svg.split("cy=\"").skip(1).map(|r| r[..r.find('"').unwrap()].parse().unwrap()).collect();
        let spread =
            |v: &[f64]| v.iter().cloned().fold(f64::MIN, f64::max) - v.iter().cloned().fold(f64::MAX, f64::min);
        assert!((spread(&cx) - 2.0 * spread(&cy)).abs() < 0.2, "{cx:?} {cy:?}");
    }

    #[test]
    fn with_an_atlas_each_point_shows_its_own_tile_on_hover_above_every_dot() {
        let point = |x: f64, group: usize| MapPoint { x, y: -x, group, text: format!("img{x}"), representative: false };
        let points: Vec<MapPoint> = (0..5).map(|i| point(i as f64, 1 + i % 2)).collect();
        // 5 tiles of 4×2, 3 to a row: tile 4 lies at (4, 2).
        let atlas = Atlas { png: vec![1, 2, 3], tile_w: 4, tile_h: 2, columns: 3 };
        let svg = scatter_map("map", &points, Some(&atlas));
        assert_eq!(svg.matches("<image ").count(), 1, "the atlas is embedded once");
        assert!(
            svg.contains(
                r#"width="12" height="4" style="image-rendering:pixelated" href="data:image/png;base64,AQID""#
            ),
            "{svg}"
        );
        assert_eq!(svg.matches(r##"<use href="#map-atlas"/>"##).count(), 5);
        let boxes: Vec<&str> = svg.split("viewBox=\"").skip(2).map(|r| &r[..r.find('"').unwrap()]).collect();
        assert_eq!(boxes, ["0 0 4 2", "4 0 4 2", "8 0 4 2", "0 2 4 2", "4 2 4 2"]);
        // The hover text moves to the transparent hit circles drawn after the dots, which catch no pointer.
        let dots = svg.find(r#"<g class="map-dots">"#).unwrap();
        let first_hit = svg.find(r#"<g class="map-pt">"#).unwrap();
        assert!(dots < first_hit && !svg[dots..first_hit].contains("<title>"), "{svg}");
        assert_eq!(svg[first_hit..].matches("<title>img").count(), 5);
        assert!(
            svg.contains(".map-dots{pointer-events:none}")
                && svg.contains(".map-pt:hover .map-thumb{visibility:visible}")
        );
        // Shown at 112 px on the longer side, inside the frame.
        for part in svg.split(r#"<svg class="map-thumb" "#).skip(1) {
            let attr = |name: &str| -> f64 {
                let r = &part[part.find(&format!("{name}=\"")).unwrap() + name.len() + 2..];
                r[..r.find('"').unwrap()].parse().unwrap()
            };
            assert_eq!((attr("width"), attr("height")), (112.0, 56.0));
            assert!(attr("x") >= 0.0 && attr("x") + 112.0 <= 640.0 && attr("y") >= 36.0 && attr("y") + 56.0 <= 536.0);
        }
    }
}
