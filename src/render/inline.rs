//! CSS inlining with css-inline, done once on the HTML templates when they load rather than on
//! every email: the CSS is the same for every email, and inlining a rendered email costs about
//! three times its rendering (`cargo bench --bench render`).
//!
//! A template is parsed as HTML with each minijinja tag set aside: an expression (`{{ … }}`)
//! becomes a placeholder of private-use characters, a statement or a comment (`{% … %}`,
//! `{# … #}`) an HTML comment holding one, so that neither changes the HTML's structure. A full
//! document (a layout, with `<html>`) is inlined with its own `<style>`; a template that extends
//! it is inlined as a fragment with the documents' CSS, its `@media` rules left in the layout's
//! `<style>`. Each template's own elements therefore get the rules written for them alone (`p`,
//! `.button`), not rules that need an ancestor from the layout (`.content p`).
//!
//! When a template cannot be read back exactly (tags that HTML moves out of order, such as
//! expressions directly inside a `<table>`; a statement inside `<title>`; a `{% raw %}` block),
//! [`prepare`] says so; and `Templates::load_with` renders every sample both ways and compares
//! the HTML a mail client would read (see [`canonical`]). Either way, on any doubt every email
//! is inlined when it is rendered instead: slower, never wrong.

use css_inline::CSSInliner;

/// Marks the start and end of a placeholder's number (Unicode private use).
const OPEN: char = '\u{E000}';
const CLOSE: char = '\u{E001}';

/// The `<style>` contents of every document among `templates` (name, source): the CSS that
/// [`prepare`] inlines into the fragments.
pub fn document_css<'a>(templates: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut css = String::new();
    for (name, source) in templates {
        if !name.ends_with(".html") || !is_document(source) {
            continue;
        }
        let mut rest = source;
        while let Some(start) = rest.find("<style") {
            let Some(open_end) = rest[start..].find('>') else {
                break;
            };
            let body = &rest[start + open_end + 1..];
            let Some(end) = body.find("</style>") else {
                break;
            };
            css.push_str(&body[..end]);
            css.push('\n');
            rest = &body[end..];
        }
    }
    css
}

fn is_document(source: &str) -> bool {
    source.to_ascii_lowercase().contains("<html")
}

/// The template `source` with its CSS inlined (a document's own, or `css` for a fragment), its
/// minijinja tags as they were; `None` when that cannot be done exactly (see the module's doc).
pub fn prepare(source: &str, css: &str) -> Option<String> {
    if source.contains("raw %}") || source.contains("raw -%}") {
        return None;
    }
    let (marked, tags) = set_aside(source)?;
    let inlined = if is_document(source) {
        CSSInliner::options()
            .load_remote_stylesheets(false)
            .keep_at_rules(true)
            .build()
            .inline(&marked)
    } else {
        CSSInliner::options()
            .load_remote_stylesheets(false)
            .build()
            .inline_fragment(&marked, css)
    }
    .ok()?;
    put_back(&inlined, &tags)
}

/// One minijinja tag set aside: its text and whether it is an expression.
struct Tag<'a> {
    text: &'a str,
    expression: bool,
}

fn placeholder(n: usize, tag: &Tag) -> String {
    if tag.expression {
        format!("{OPEN}{n}{CLOSE}")
    } else {
        format!("<!--{OPEN}{n}{CLOSE}-->")
    }
}

/// `source` with each tag replaced by its placeholder, and the tags in order; `None` for an
/// unclosed tag or a private-use character of our own already in the text.
fn set_aside(source: &str) -> Option<(String, Vec<Tag<'_>>)> {
    if source.contains(OPEN) || source.contains(CLOSE) {
        return None;
    }
    let mut out = String::with_capacity(source.len());
    let mut tags = Vec::new();
    let mut rest = source;
    while let Some(start) = rest.find('{') {
        let close = match rest[start..].chars().nth(1) {
            Some('{') => "}}",
            Some('%') => "%}",
            Some('#') => "#}",
            _ => {
                out.push_str(&rest[..=start]);
                rest = &rest[start + 1..];
                continue;
            }
        };
        let end = start + 2 + rest[start + 2..].find(close)? + 2;
        out.push_str(&rest[..start]);
        let tag = Tag {
            text: &rest[start..end],
            expression: close == "}}",
        };
        out.push_str(&placeholder(tags.len(), &tag));
        tags.push(tag);
        rest = &rest[end..];
    }
    out.push_str(rest);
    Some((out, tags))
}

/// The tags back in place; `None` unless each placeholder is found once, in order, as it was
/// written (HTML moved none and escaped none).
fn put_back(inlined: &str, tags: &[Tag]) -> Option<String> {
    let mut out =
        String::with_capacity(inlined.len() + tags.iter().map(|t| t.text.len()).sum::<usize>());
    let mut rest = inlined;
    for (n, tag) in tags.iter().enumerate() {
        let mark = placeholder(n, tag);
        let at = rest.find(&mark)?;
        out.push_str(&rest[..at]);
        out.push_str(tag.text);
        rest = &rest[at + mark.len()..];
    }
    if rest.contains(OPEN) {
        return None;
    }
    out.push_str(rest);
    Some(out)
}

/// `html` as the inliner wrote it, with each tag's attributes in name order and each run of
/// whitespace as one space: two emails equal under this are the same email (the inliner writes
/// the attributes of an element it styles in another order than those it leaves alone, and moves
/// the blank lines around `</body>`; the templates have no `<pre>`).
pub fn canonical(html: &str) -> String {
    let html = html.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = String::with_capacity(html.len());
    let mut rest = html.as_str();
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let tag = &rest[start..];
        let Some(end) = tag_end(tag) else {
            out.push_str(tag);
            return out.trim_end().to_owned();
        };
        out.push_str(&sorted_attributes(&tag[..=end]));
        rest = &tag[end + 1..];
    }
    out.push_str(rest);
    out.trim_end().to_owned()
}

/// The index of the `>` that ends the tag at the start of `tag`, outside quoted values.
fn tag_end(tag: &str) -> Option<usize> {
    let mut quote = None;
    for (i, c) in tag.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '>') => return Some(i),
            _ => {}
        }
    }
    None
}

/// A start tag with its `name="value"` attributes sorted; anything else as it is.
fn sorted_attributes(tag: &str) -> String {
    let inner = &tag[1..tag.len() - 1];
    if inner.starts_with(['/', '!']) || !inner.contains('=') {
        return tag.to_owned();
    }
    let Some((name, attrs)) = inner.split_once(' ') else {
        return tag.to_owned();
    };
    let mut parts = Vec::new();
    let mut rest = attrs.trim();
    while !rest.is_empty() {
        let Some(eq) = rest.find("=\"") else {
            return tag.to_owned();
        };
        let Some(close) = rest[eq + 2..].find('"') else {
            return tag.to_owned();
        };
        parts.push(&rest[..eq + 2 + close + 1]);
        rest = rest[eq + 2 + close + 1..].trim_start();
    }
    parts.sort_unstable();
    format!("<{name} {}>", parts.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSS: &str = "p { margin: 0; } .button { color: #fff; }";

    #[test]
    fn tags_survive_and_elements_get_their_styles() {
        let source = r#"{% extends "layout.html" %}{% block content %}<p>{{ t("hi", name=user.name) }}</p>
{% for x in xs %}<p class="button">{{ x }}{# note #}</p>{% endfor %}{% if a > b %}<a href="{{ url }}">go</a>{% endif %}{% endblock %}"#;
        let out = prepare(source, CSS).unwrap();
        assert_eq!(
            out,
            r#"{% extends "layout.html" %}{% block content %}<p style="margin: 0;">{{ t("hi", name=user.name) }}</p>
{% for x in xs %}<p class="button" style="margin: 0;color: #fff;">{{ x }}{# note #}</p>{% endfor %}{% if a > b %}<a href="{{ url }}">go</a>{% endif %}{% endblock %}"#
        );
    }

    #[test]
    fn a_document_keeps_its_media_rules_and_inlines_the_rest() {
        let source = "<!doctype html><html lang=\"{{ locale }}\"><head><title>{{ title }}</title><style>p { color: red; } @media (prefers-color-scheme: dark) { p { color: white !important; } }</style></head><body><p>{{ body }}</p></body></html>";
        let out = prepare(source, "").unwrap();
        assert!(
            out.contains(r#"<p style="color: red;">{{ body }}</p>"#),
            "{out}"
        );
        assert!(out.contains("@media (prefers-color-scheme: dark)"), "{out}");
        assert!(out.contains(r#"<html lang="{{ locale }}">"#), "{out}");
        assert!(out.contains("<title>{{ title }}</title>"), "{out}");
    }

    #[test]
    fn what_html_would_escape_or_drop_is_refused() {
        // A statement inside <title> would come back escaped.
        assert_eq!(
            prepare(
                "<html><head><title>{% if a %}b{% endif %}</title></head></html>",
                CSS
            ),
            None
        );
        assert_eq!(prepare("{% raw %}{{ x }}{% endraw %}", CSS), None);
        assert_eq!(prepare("<p>{{ unclosed </p>", CSS), None);
    }

    #[test]
    fn canonical_html_sorts_attributes_and_trims_the_end() {
        assert_eq!(
            canonical("<p style=\"a: b;\" class=\"x\">1 >  0</p>\n\n<br>\n\n"),
            "<p class=\"x\" style=\"a: b;\">1 > 0</p> <br>"
        );
        assert_ne!(
            canonical("<p class=\"x\">a</p>"),
            canonical("<p class=\"y\">a</p>")
        );
    }

    #[test]
    fn the_css_of_documents_is_collected() {
        let css = document_css(
            [
                ("layout.html", "<html><style>p { a: b; }</style></html>"),
                ("kind/body.html", "<style>q { c: d; }</style>"),
                ("layout.txt", "<html><style>r { e: f; }</style></html>"),
            ]
            .into_iter(),
        );
        assert_eq!(css, "p { a: b; }\n");
    }
}
