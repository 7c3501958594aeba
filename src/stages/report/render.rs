//! Rendering: the templates, the escaping of user text for Markdown and HTML, and the drawings.

use std::path::Path;

use super::ReportError;
use super::view::Evidence;
use crate::engine::stage::StageError;

/// The shipped templates; a manifest's `template` folder may replace either.
pub(super) const MARKDOWN: &str = include_str!("../../../templates/report.md.j2");

pub(super) const HTML: &str = include_str!("../../../templates/report.html.j2");

/// The reference implementations and the versions the committed fixtures were generated with.
pub(super) const REFERENCES: &str = include_str!("../../../tests/fixtures/versions.json");

/// A Markdown code span holding `text` as it is: fenced by more backticks than any run inside it (CommonMark),
/// so no text can close it early; inside it, `<` and `&` are shown, not interpreted.
pub(super) fn code_span(text: &str) -> String {
    let text = visible(text);
    let ticks = "`".repeat(longest_run(&text, '`') + 1);
    let pad = if text.starts_with('`') || text.ends_with('`') { " " } else { "" };
    format!("{ticks}{pad}{text}{pad}{ticks}")
}

/// Whether a character must not reach a report as it is: control characters (a NUL breaks HTML parsing, terminal
/// escapes run in `cat report.md`) and the bidirectional overrides and isolates that reorder what a reader sees.
pub(super) fn hidden(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\r') || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// User text with every [`hidden`] character shown as U+FFFD, so a reader sees that something was there.
pub(super) fn visible(text: &str) -> std::borrow::Cow<'_, str> {
    if text.chars().any(hidden) {
        text.chars().map(|c| if hidden(c) { '\u{fffd}' } else { c }).collect::<String>().into()
    } else {
        text.into()
    }
}

/// User text as Markdown shows it literally: HTML's `<`, `>`, `&` as entities (viewers render raw HTML), and the
/// punctuation that makes Markdown (emphasis, code, links, table cells, line breaks) escaped with a backslash;
/// control characters and bidirectional overrides shown as U+FFFD.
pub(super) fn markdown_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in visible(text).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '#' | '!' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// The longest run of `c` in `text`.
pub(super) fn longest_run(text: &str, c: char) -> usize {
    text.split(|x| x != c).map(str::len).max().unwrap_or(0)
}

/// Renders both templates (a user folder's where present, else the shipped ones), strict about undefined values,
/// HTML-escaping the HTML one.
pub(super) fn render(context: &Evidence, folder: Option<&Path>) -> Result<(String, String), StageError> {
    let mut env = environment();
    let mut sources = vec![("report.md.j2", MARKDOWN.to_string()), ("report.html.j2", HTML.to_string())];
    if let Some(dir) = folder {
        for (name, source) in &mut sources {
            let path = dir.join(*name);
            if path.exists() {
                *source = std::fs::read_to_string(&path).map_err(|e| StageError::io(&path, e))?;
            }
        }
    }
    let located = |source: minijinja::Error| ReportError::Template {
        template: source.name().unwrap_or("template").to_string(),
        line: source.line().unwrap_or(0),
        origin: folder.map_or("shipped template".to_string(), |d| format!("template folder {}", d.display())),
        source,
    };
    for (name, source) in sources {
        env.add_template_owned(name, source).map_err(located)?;
    }
    let value = minijinja::value::Value::from(minijinja::value::Serde(context));
    let draw = |name: &str| env.get_template(name).and_then(|t| t.render(value.clone())).map_err(located);
    Ok((draw("report.md.j2")?, draw("report.html.j2")?))
}

/// The template environment both reports render in: strict about undefined values; user text escaped for HTML or
/// Markdown by the template's name, with control characters and bidirectional overrides shown as U+FFFD in every
/// filter's output too.
pub(super) fn environment() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html.j2") {
            minijinja::AutoEscape::Html
        } else if name.ends_with(".md.j2") {
            minijinja::AutoEscape::Custom("markdown".into())
        } else {
            minijinja::AutoEscape::None
        }
    });
    // Markdown viewers render raw HTML: user text (titles, descriptions, annotations) has `<`, `>` and `&` escaped.
    env.set_formatter(|out, state, value| {
        if let minijinja::AutoEscape::Custom(name) = state.auto_escape()
            && name == "markdown"
        {
            return match value.as_str() {
                Some(text) if !value.is_safe() => out.write_str(&markdown_text(text)).map_err(minijinja::Error::from),
                _ => write!(out, "{value}").map_err(minijinja::Error::from),
            };
        }
        // HTML escapes `<`, `>`, `&` and quotes; control characters and bidirectional overrides go first.
        match value.as_str() {
            Some(text) if !value.is_safe() && text.chars().any(hidden) => {
                minijinja::escape_formatter(out, state, &minijinja::Value::from(visible(text).into_owned()))
            }
            _ => minijinja::escape_formatter(out, state, value),
        }
    });
    env.add_filter("code", |text: String| minijinja::Value::from_safe_string(code_span(&text)));
    // A code span in a table cell: GFM splits cells at every unescaped pipe, code spans included.
    env.add_filter("ccode", |text: String| minijinja::Value::from_safe_string(code_span(&text).replace('|', "\\|")));
    env.add_filter("fence", |text: String, lang: String| {
        let ticks = "`".repeat(longest_run(&text, '`').max(2) + 1);
        let newline = if text.ends_with('\n') { "" } else { "\n" };
        minijinja::Value::from_safe_string(format!("{ticks}{lang}\n{}{newline}{ticks}", visible(&text)))
    });
    env
}
