//! Problems found in a manifest, located by byte span and shown as `path:line:col` with the offending text underlined.
//!
//! A manifest check collects every [`Diagnostic`] before it reports; [`Sources`] maps a span back to the file
//! (or the `--set` override) it came from, so one renderer serves both.

use std::fmt::Write as _;
use std::ops::Range;

/// One problem in a manifest: a message, where it is, and an optional hint under the caret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub message: String,
    pub span: Range<usize>,
    pub label: Option<String>,
    /// A second location that explains the first (for example where a duplicate id was first defined).
    pub note: Option<(String, Range<usize>)>,
}

impl Diagnostic {
    pub fn new(message: impl Into<String>, span: Range<usize>) -> Self {
        Diagnostic { message: message.into(), span, label: None, note: None }
    }

    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    pub fn with_note(mut self, message: impl Into<String>, span: Range<usize>) -> Self {
        self.note = Some((message.into(), span));
        self
    }
}

/// The texts that spans point into: the manifest first, then every `--set` override, laid end to end.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    segments: Vec<Segment>,
}

#[derive(Debug, Clone)]
struct Segment {
    name: String,
    text: String,
    start: usize,
}

impl Sources {
    /// Appends a text and returns the offset its spans must be shifted by.
    pub fn add(&mut self, name: impl Into<String>, text: impl Into<String>) -> usize {
        let start = self.segments.last().map_or(0, |s| s.start + s.text.len() + 1);
        self.segments.push(Segment { name: name.into(), text: text.into(), start });
        start
    }

    /// The text of the first segment (the manifest).
    pub fn main_text(&self) -> &str {
        self.segments.first().map_or("", |s| s.text.as_str())
    }

    /// `(name, line, column)` of a global byte offset, 1-based, columns counted in characters.
    pub fn locate(&self, offset: usize) -> (&str, usize, usize) {
        let seg = self.segment(offset);
        let local = offset.saturating_sub(seg.start).min(seg.text.len());
        let before = &seg.text[..floor_char_boundary(&seg.text, local)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        (&seg.name, line, col)
    }

    fn segment(&self, offset: usize) -> &Segment {
        self.segments
            .iter()
            .rev()
            .find(|s| s.start <= offset)
            .unwrap_or_else(|| self.segments.first().expect("Sources holds at least the manifest"))
    }

    /// Renders diagnostics the way compilers do: message, location, the source line and a caret line.
    pub fn render(&self, diagnostics: &[Diagnostic]) -> String {
        let mut out = String::new();
        for d in diagnostics {
            let _ = writeln!(out, "error: {}", d.message);
            self.render_span(&mut out, &d.span, d.label.as_deref());
            if let Some((message, span)) = &d.note {
                let _ = writeln!(out, "note: {message}");
                self.render_span(&mut out, span, None);
            }
            out.push('\n');
        }
        let n = diagnostics.len();
        let _ = writeln!(out, "{n} problem{} found", if n == 1 { "" } else { "s" });
        out
    }

    fn render_span(&self, out: &mut String, span: &Range<usize>, label: Option<&str>) {
        if self.segments.is_empty() {
            return;
        }
        let seg = self.segment(span.start);
        let (name, line, col) = self.locate(span.start);
        let local_start = floor_char_boundary(&seg.text, span.start.saturating_sub(seg.start));
        let line_start = seg.text[..local_start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = seg.text[line_start..].find('\n').map_or(seg.text.len(), |i| line_start + i);
        let source_line = seg.text[line_start..line_end].trim_end_matches('\r');
        let local_end = floor_char_boundary(&seg.text, span.end.saturating_sub(seg.start)).clamp(local_start, line_end);
        let width = seg.text[local_start..local_end].chars().count().max(1);
        let gutter = line.to_string().len();
        let pad = " ".repeat(gutter);
        let _ = writeln!(out, "{pad}--> {name}:{line}:{col}");
        let _ = writeln!(out, "{pad} |");
        let _ = writeln!(out, "{line} | {source_line}");
        let _ = write!(out, "{pad} | {}{}", " ".repeat(col - 1), "^".repeat(width));
        if let Some(label) = label {
            let _ = write!(out, " {label}");
        }
        out.push('\n');
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The candidate closest to `name` by edit distance, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_lines_and_columns_across_segments() {
        let mut s = Sources::default();
        s.add("w.toml", "a = 1\nbb = \"x\"\n");
        let off = s.add("--set s.k", "42");
        assert_eq!(s.locate(6), ("w.toml", 2, 1));
        assert_eq!(s.locate(11), ("w.toml", 2, 6));
        assert_eq!(s.locate(off + 1), ("--set s.k", 1, 2));
    }

    #[test]
    fn renders_a_caret_under_the_span() {
        let mut s = Sources::default();
        s.add("w.toml", "[[stage]]\nkind = \"trian\"\n");
        let text =
            s.render(&[Diagnostic::new("unknown stage kind `trian`", 17..24).with_label("did you mean `train`?")]);
        assert!(text.contains("--> w.toml:2:8"), "{text}");
        assert!(text.contains("2 | kind = \"trian\"\n  |        ^^^^^^^ did you mean `train`?"), "{text}");
    }

    #[test]
    fn suggests_only_close_names() {
        assert_eq!(did_you_mean("trian", ["train", "test", "cluster"]), Some("train"));
        assert_eq!(did_you_mean("zzz", ["train", "test"]), None);
    }
}
