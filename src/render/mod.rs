//! minijinja templates: loaded and checked at start, then rendered from a delivery's payload.
//!
//! Layout of the templates folder: `layout.html` and `layout.txt` are shared; each kind has
//! `<kind>/subject.txt`, `<kind>/body.html` and `<kind>/body.txt`. Files ending in `.html` are
//! autoescaped, and an undefined variable is an error rather than an empty string. Which kinds
//! exist is not known here: the caller passes the kinds' sample payloads to check.
//!
//! Every template sees the payload's fields, `now` (the instant it is rendered at, for the
//! relative words of [`time`]), `locale` (the user's, resolved by [`i18n`]), the links
//! (`unsubscribe_url`, `button_url`, `preferences_url`, each only when there is one), the time
//! filters of [`time`] and `t("message-id", …)`, which writes a message of
//! `messages/<locale>.ftl`.
//!
//! The HTML's CSS is written in a `<style>` of the layout and inlined into `style` attributes by
//! `css-inline` (mail clients such as Gmail drop or ignore a `<head>`'s styles): once, on the
//! templates as they load ([`inline`]), or, for templates that cannot be inlined that way, on
//! every email as it is rendered. `@media` rules (dark mode, narrow screens) stay in the
//! `<style>`, where clients that read them find them.

pub mod i18n;
mod inline;
pub mod time;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use chrono::{DateTime, SecondsFormat, Utc};
use minijinja::{Environment, UndefinedBehavior};
use serde_json::Value;

use crate::{
    config::{AppSettings, Settings},
    payload::Payload,
};
use i18n::Catalog;

/// The three parts of one email, and the recipient's name for its `To:`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub html: String,
    pub text: String,
    /// The recipient's display name (the payload's `user.name`), shown in `To:` as
    /// `Ada Lovelace <ada@example.com>`; `None` when the payload has none.
    pub to_name: Option<String>,
}

/// A template problem, with the file, the line and minijinja's reason.
#[derive(Debug, thiserror::Error)]
#[error("{}", describe(.0, .1))]
pub struct TemplateError(PathBuf, minijinja::Error);

fn describe(dir: &Path, e: &minijinja::Error) -> String {
    let file = e
        .name()
        .map(|n| dir.join(n).display().to_string())
        .unwrap_or_else(|| dir.display().to_string());
    let line = e.line().map(|l| format!(":{l}")).unwrap_or_default();
    let mut reason = format!("{}", e.kind());
    if let Some(detail) = e.detail() {
        reason.push_str(": ");
        reason.push_str(detail);
    }
    format!("template {file}{line}: {reason}")
}

/// What a render needs besides the templates: the default language and the host app's links.
#[derive(Debug, Clone)]
pub struct Options {
    /// `templates.default_locale`.
    pub default_locale: String,
    /// `[app]`; `None`: no button and no preferences link.
    pub app: Option<AppSettings>,
    /// Each kind's `link`, the path its button opens after `app.url`.
    pub links: BTreeMap<String, String>,
    /// When the CSS is inlined: on the templates as they load (the default), or on every email.
    pub inlining: Inlining,
}

/// When the HTML's CSS goes into `style` attributes; both give the same emails (the golden test
/// compares them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inlining {
    /// Once, on the templates; every email as rendered when a template cannot be (see [`inline`]).
    AtLoad,
    /// On every rendered email.
    AtRender,
}

impl Default for Options {
    /// English, no links into an app.
    fn default() -> Options {
        Options {
            default_locale: "en".to_owned(),
            app: None,
            links: BTreeMap::new(),
            inlining: Inlining::AtLoad,
        }
    }
}

impl Options {
    pub fn of(settings: &Settings) -> Options {
        Options {
            default_locale: settings.default_locale.clone(),
            app: settings.app.clone(),
            links: settings
                .schedules
                .iter()
                .map(|s| (s.name.clone(), s.link.clone()))
                .collect(),
            inlining: Inlining::AtLoad,
        }
    }
}

/// All templates, parsed once.
pub struct Templates {
    env: Environment<'static>,
    dir: PathBuf,
    catalog: Arc<Catalog>,
    options: Options,
    inliner: css_inline::CSSInliner<'static>,
    /// Whether each rendered email's HTML is inlined (the templates could not all be).
    inline_each: bool,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Templates({}, {:?})", self.dir.display(), self.catalog)
    }
}

impl Templates {
    /// [`Templates::load_with`] in English, without links into an app.
    pub fn load(dir: &Path, samples: &[Payload]) -> Result<Templates, TemplateError> {
        Self::load_with(dir, Options::default(), samples)
    }

    /// [`Templates::load_with`] with the settings' locale and links.
    pub fn from_settings(
        settings: &Settings,
        samples: &[Payload],
    ) -> Result<Templates, TemplateError> {
        Self::load_with(&settings.templates_dir, Options::of(settings), samples)
    }

    /// Loads every template and every locale's messages under `dir` and renders each sample
    /// (every sample of every kind, from `kinds::samples`, at its own instant) in every locale,
    /// so a syntax error, a missing file, an undefined variable or a message missing from the
    /// default locale in any branch a sample takes stops start-up instead of an email.
    pub fn load_with(
        dir: &Path,
        options: Options,
        samples: &[Payload],
    ) -> Result<Templates, TemplateError> {
        let messages = dir.join("messages");
        let catalog = Catalog::load(&messages, &options.default_locale).map_err(|e| {
            TemplateError(
                messages.clone(),
                minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, e),
            )
        })?;
        let catalog = Arc::new(catalog);
        let mut files = Vec::new();
        collect(dir, dir, &mut files).map_err(|e| {
            TemplateError(
                dir.to_path_buf(),
                minijinja::Error::new(
                    minijinja::ErrorKind::TemplateNotFound,
                    format!("cannot read the templates folder ({e}); set templates.dir or run from the repository root"),
                ),
            )
        })?;
        let css = inline::document_css(files.iter().map(|(n, s)| (n.as_str(), s.as_str())));
        let inlined: Option<Vec<(String, String)>> = match options.inlining {
            Inlining::AtRender => None,
            Inlining::AtLoad => files
                .iter()
                .map(|(name, source)| {
                    if name.ends_with(".html") {
                        inline::prepare(source, &css).map(|s| (name.clone(), s))
                    } else {
                        Some((name.clone(), source.clone()))
                    }
                })
                .collect(),
        };
        let plain = environment(&catalog, files, dir)?;
        let inlined = inlined
            .map(|files| environment(&catalog, files, dir))
            .transpose()?;
        let inliner = css_inline::CSSInliner::options()
            .load_remote_stylesheets(false)
            .keep_at_rules(true)
            .build();
        let mut templates = Templates {
            env: plain,
            dir: dir.to_path_buf(),
            catalog,
            options,
            inliner,
            inline_each: true,
        };
        let mut payloads = Vec::new();
        for sample in samples {
            for locale in templates.catalog.tags() {
                let mut payload = sample.to_value();
                payload["user"]["locale"] = Value::String(locale.clone());
                templates.render(sample.kind(), &payload, sample.at())?;
                payloads.push((sample.kind(), payload, sample.at()));
            }
        }
        if let Some(inlined) = inlined {
            // The templates inlined as they loaded are used only if every sample's HTML comes
            // out of them as it does inlined after rendering (both read back through the
            // inliner, which writes HTML one way).
            let plain = std::mem::replace(&mut templates.env, inlined);
            templates.inline_each = false;
            let same = payloads.iter().all(|(kind, payload, at)| {
                let pre = templates.render(kind, payload, *at);
                let post = templates.with_env(&plain, |t| t.render(kind, payload, *at));
                match (pre, post) {
                    (Ok(pre), Ok(post)) => {
                        templates
                            .inline(&pre.html)
                            .ok()
                            .map(|h| inline::canonical(&h))
                            == Some(inline::canonical(&post.html))
                            && pre.text == post.text
                    }
                    _ => false,
                }
            });
            if !same {
                templates.env = plain;
                templates.inline_each = true;
            }
        }
        templates.catalog.start_counting();
        Ok(templates)
    }

    /// Runs `f` with `env` in place of the templates' own, inlining every email.
    fn with_env<T>(&mut self, env: &Environment<'static>, f: impl FnOnce(&Self) -> T) -> T {
        let own = std::mem::replace(&mut self.env, env.clone());
        let each = std::mem::replace(&mut self.inline_each, true);
        let out = f(self);
        self.env = own;
        self.inline_each = each;
        out
    }

    /// The locales' messages: `herald check` lists what each lacks, `/metrics` the fallbacks.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Renders one email of `kind` (the name of its templates folder) from its payload, as it
    /// reads at `now`, with no unsubscribe link.
    pub fn render(
        &self,
        kind: &str,
        payload: &Value,
        now: DateTime<Utc>,
    ) -> Result<Rendered, TemplateError> {
        self.render_with(kind, payload, now, None)
    }

    /// As [`Templates::render`], with the email's unsubscribe page in `unsubscribe_url` (the
    /// layouts' footer links to it when there is one).
    pub fn render_with(
        &self,
        kind: &str,
        payload: &Value,
        now: DateTime<Utc>,
        unsubscribe_url: Option<&str>,
    ) -> Result<Rendered, TemplateError> {
        let mut r = self.render_parts(kind, payload, now, unsubscribe_url)?;
        if self.inline_each {
            r.html = self.inline(&r.html)?;
        }
        Ok(r)
    }

    /// Whether every email's HTML is inlined as it is rendered (slower): asked for, or some
    /// template could not be inlined as it loaded.
    pub fn inlines_each_email(&self) -> bool {
        self.inline_each
    }

    fn render_parts(
        &self,
        kind: &str,
        payload: &Value,
        now: DateTime<Utc>,
        unsubscribe_url: Option<&str>,
    ) -> Result<Rendered, TemplateError> {
        let wanted = payload
            .get("user")
            .and_then(|u| u.get("locale"))
            .and_then(Value::as_str);
        let locale = self.catalog.tag(self.catalog.resolve(wanted));
        let (button_url, preferences_url) = self.app_links(kind, payload);
        let ctx = minijinja::context! {
            now => now.to_rfc3339_opts(SecondsFormat::Secs, true),
            locale,
            unsubscribe_url,
            button_url,
            preferences_url,
            ..minijinja::Value::from_serialize(payload)
        };
        let part = |file: &str| -> Result<String, TemplateError> {
            let name = format!("{kind}/{file}");
            self.env
                .get_template(&name)
                .and_then(|t| t.render(&ctx))
                .map_err(|e| TemplateError(self.dir.clone(), e))
        };
        Ok(Rendered {
            // A subject is one line: newlines would break the header.
            subject: part("subject.txt")?
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
            html: part("body.html")?,
            text: part("body.txt")?,
            to_name: payload
                .pointer("/user/name")
                .and_then(Value::as_str)
                .and_then(crate::domain::display_name),
        })
    }

    /// The button's address (the task's own path for an email about one task, else the kind's
    /// `link`) and the preferences page's, both in the host app; `None` without `app.url`.
    fn app_links(&self, kind: &str, payload: &Value) -> (Option<String>, Option<String>) {
        let Some(app) = &self.options.app else {
            return (None, None);
        };
        let path = payload
            .get("task")
            .and_then(|t| t.get("path"))
            .and_then(Value::as_str)
            .filter(|p| p.starts_with('/'))
            .or_else(|| self.options.links.get(kind).map(String::as_str))
            .unwrap_or("/");
        (
            Some(format!("{}{path}", app.url)),
            Some(format!("{}{}", app.url, app.preferences_path)),
        )
    }

    /// The `<style>` rules moved into `style` attributes, `@media` rules kept.
    fn inline(&self, html: &str) -> Result<String, TemplateError> {
        self.inliner.inline(html).map_err(|e| {
            TemplateError(
                self.dir.clone(),
                minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    format!("cannot inline the CSS of the HTML part: {e}"),
                ),
            )
        })
    }
}

/// An environment holding `files`, with Herald's settings, filters and `t`.
fn environment(
    catalog: &Arc<Catalog>,
    files: Vec<(String, String)>,
    dir: &Path,
) -> Result<Environment<'static>, TemplateError> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_trim_blocks(true);
    env.set_keep_trailing_newline(false);
    env.set_formatter(html_formatter);
    time::register(&mut env, catalog);
    for (name, source) in files {
        env.add_template_owned(name, source)
            .map_err(|e| TemplateError(dir.to_path_buf(), e))?;
    }
    Ok(env)
}

/// minijinja's formatter, except that text in HTML escapes only `& < > " '`: its default also
/// writes `/` as `&#x2f;`, which fills every link of an email with entities.
fn html_formatter(
    out: &mut minijinja::Output,
    state: &minijinja::State,
    value: &minijinja::Value,
) -> Result<(), minijinja::Error> {
    match value.as_str() {
        Some(text) if state.auto_escape() == minijinja::AutoEscape::Html && !value.is_safe() => {
            let mut last = 0;
            for (i, c) in text.char_indices() {
                let entity = match c {
                    '&' => "&amp;",
                    '<' => "&lt;",
                    '>' => "&gt;",
                    '"' => "&quot;",
                    '\'' => "&#x27;",
                    _ => continue,
                };
                out.write_str(&text[last..i])?;
                out.write_str(entity)?;
                last = i + 1;
            }
            out.write_str(&text[last..]).map_err(Into::into)
        }
        _ => minijinja::escape_formatter(out, state, value),
    }
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(root, &path, out)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("html" | "txt")
        ) {
            let name = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .replace('\\', "/");
            out.push((name, std::fs::read_to_string(&path)?));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_templates() -> Templates {
        Templates::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("templates"),
            &crate::kinds::samples(),
        )
        .unwrap()
    }

    #[test]
    fn html_is_escaped_and_text_is_not() {
        let t = repo_templates();
        let sample = &crate::kinds::Kind::find("overdue_summary")
            .unwrap()
            .samples()[0];
        let r = t
            .render(
                "overdue_summary",
                &sample.payload.to_value(),
                sample.payload.at(),
            )
            .unwrap();
        assert!(r.html.contains("Write the &lt;report&gt;"), "{}", r.html);
        // Only & < > " ' are escaped: links keep their slashes.
        assert!(!r.html.contains("&#x2f;"), "{}", r.html);
        assert!(r.text.contains("Write the <report>"), "{}", r.text);
        assert!(!r.subject.contains('\n'));
    }

    /// Loads a copy of the repository's templates with `file` replaced; returns the error.
    fn load_error_with(file: &str, content: &str) -> String {
        let dir = std::env::temp_dir().join(format!("herald-tpl-{}", uuid::Uuid::new_v4()));
        copy_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("templates"),
            &dir,
        );
        std::fs::write(dir.join(file), content).unwrap();
        let err = Templates::load(&dir, &crate::kinds::samples())
            .unwrap_err()
            .to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        err
    }

    #[test]
    fn the_repository_templates_are_inlined_as_they_load_and_a_misread_one_each_email() {
        assert!(!repo_templates().inlines_each_email());
        // Expressions directly in a table: an HTML parser moves their text before the table,
        // out of order with the one in the cell. Noticed, and inlined per email.
        let dir = std::env::temp_dir().join(format!("herald-tpl-{}", uuid::Uuid::new_v4()));
        copy_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("templates"),
            &dir,
        );
        let path = dir.join("focus_streak/body.html");
        let body = std::fs::read_to_string(&path).unwrap().replace(
            "{% block content %}",
            "{% block content %}<table>{{ focus_minutes }}<tr><td>{{ focus_sessions }}</td></tr>{{ streak_days }}</table>",
        );
        std::fs::write(&path, body).unwrap();
        let t = Templates::load(&dir, &crate::kinds::samples()).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(t.inlines_each_email());
    }

    #[test]
    fn a_broken_template_names_its_file_and_line() {
        let err = load_error_with("task_reminders/body.txt", "Hello\n{{ user.name }\n");
        assert!(err.contains("task_reminders/body.txt:2"), "{err}");
    }

    #[test]
    fn an_undefined_variable_is_an_error() {
        let err = load_error_with("weekly_report/subject.txt", "Week of {{ user.nickname }}");
        assert!(err.contains("weekly_report/subject.txt:1"), "{err}");
        assert!(err.contains("undefined"), "{err}");
    }

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let p = e.unwrap().path();
            let target = to.join(p.file_name().unwrap());
            if p.is_dir() {
                copy_dir(&p, &target);
            } else {
                std::fs::copy(&p, &target).unwrap();
            }
        }
    }
}

/// Hostile task data never makes rendering panic: every string of each kind's sample (names,
/// titles) replaced by arbitrary text, with CR/LF, NUL, right-to-left marks, header lines and
/// very long titles among the cases.
#[cfg(test)]
mod props {
    use proptest::prelude::*;
    use serde_json::Value;

    use super::*;

    fn templates() -> &'static Templates {
        static T: std::sync::OnceLock<Templates> = std::sync::OnceLock::new();
        T.get_or_init(|| {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
            Templates::load(&dir, &crate::kinds::samples()).expect("the templates load")
        })
    }

    /// Every string leaf of `v` replaced by `text`.
    fn replace_strings(v: &Value, text: &str) -> Value {
        match v {
            Value::String(_) => Value::String(text.to_owned()),
            Value::Array(items) => items.iter().map(|i| replace_strings(i, text)).collect(),
            Value::Object(map) => map
                .iter()
                .map(|(k, v)| (k.clone(), replace_strings(v, text)))
                .collect::<serde_json::Map<_, _>>()
                .into(),
            other => other.clone(),
        }
    }

    fn hostile() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[\\PC\r\n\u{0}\u{202e}\u{200f}]{0,64}",
            Just("Ada\r\nBcc: evil@example.com\r\n".to_owned()),
            Just("x".repeat(1 << 20)),
            Just("{{ 7 * 7 }}{% raw %}".to_owned()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(crate::proptest_cases(64)))]

        #[test]
        fn any_text_in_names_and_titles_renders_or_errs(text in hostile()) {
            for kind in crate::kinds::Kind::all() {
                let sample = kind.samples().remove(0).payload;
                let payload = replace_strings(&sample.to_value(), &text);
                // Kind names must stay what they are; the rest is the user's data.
                let mut payload = payload;
                if let Some(k) = payload.get_mut("kind") {
                    *k = Value::String(kind.name().to_owned());
                }
                let _ = templates().render(kind.name(), &payload, sample.at());
            }
        }
    }
}
