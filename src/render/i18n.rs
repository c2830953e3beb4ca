//! The words of every email in every language: Project Fluent messages, one file per locale
//! (`templates/messages/<locale>.ftl`), and the choice of a user's locale among them.
//!
//! A user's locale is a BCP 47 tag from the app (`fr-CA`, `en`, or nothing). It is resolved
//! against the locales that have a file, dropping subtags from the right (`fr-CA` → `fr`), then
//! the configured default (`templates.default_locale`). A message missing from the user's locale
//! is taken from the default one and counted (`herald_translation_fallbacks_total`), so an email
//! is never sent with a hole in it; a message missing from the default locale is an error, which
//! the start-up render of every sample finds.
//!
//! Dates are written with chrono's locale data (day and month names), in the patterns each
//! locale's messages give (`date-short`, `date-long`, `datetime`); whole numbers from 1,000 up
//! with the language's thousands separator from the same data (`1,250`, `1 250`).

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use fluent_bundle::{FluentArgs, FluentResource, FluentValue, concurrent::FluentBundle};
use unic_langid::LanguageIdentifier;

/// One locale's messages.
struct Locale {
    /// The tag, as the file is named (`fr`, `en-GB`).
    tag: String,
    bundle: FluentBundle<FluentResource>,
    /// The day and month names chrono writes for this locale.
    dates: chrono::Locale,
    /// The ids of its messages.
    ids: BTreeSet<String>,
}

/// Per locale, the messages taken from the default locale because it lacked them, since the
/// process started (`herald_translation_fallbacks_total`).
static FALLBACKS: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());

/// Per locale, the messages sent in the default locale's words because the locale lacked them.
pub fn fallbacks() -> Vec<(String, u64)> {
    let counts = FALLBACKS.lock().unwrap_or_else(|e| e.into_inner());
    counts.iter().map(|(k, v)| (k.clone(), *v)).collect()
}

/// Every locale's messages, and the default.
pub struct Catalog {
    locales: Vec<Locale>,
    default: usize,
    /// Off while the samples are rendered at start-up: only real emails count fallbacks.
    counting: AtomicBool,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tags: Vec<&str> = self.locales.iter().map(|l| l.tag.as_str()).collect();
        write!(
            f,
            "Catalog({tags:?}, default {})",
            self.locales[self.default].tag
        )
    }
}

/// Where a user's locale was resolved to: an index into the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocaleId(usize);

impl Catalog {
    /// Reads every `<tag>.ftl` of `dir`. `default` must be one of them.
    pub fn load(dir: &Path, default: &str) -> Result<Catalog, String> {
        let entries = std::fs::read_dir(dir).map_err(|e| {
            format!(
                "cannot read the messages folder {} ({e}); it holds one <locale>.ftl per language, such as en.ftl",
                dir.display()
            )
        })?;
        let mut files: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "ftl"))
            .collect();
        files.sort();
        let mut locales = Vec::with_capacity(files.len());
        for path in files {
            let tag = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_owned();
            let id: LanguageIdentifier = tag.parse().map_err(|e| {
                format!(
                    "{}: {tag:?} is not a BCP 47 language tag ({e}); name the file after its language, such as fr.ftl or pt-BR.ftl",
                    path.display()
                )
            })?;
            let source = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let resource = FluentResource::try_new(source).map_err(|(_, errors)| {
                let first = errors.first().map(|e| e.to_string()).unwrap_or_default();
                format!(
                    "{}: {} Fluent syntax error(s), the first: {first}; see https://projectfluent.org/fluent/guide/",
                    path.display(),
                    errors.len()
                )
            })?;
            let ids = resource
                .entries()
                .filter_map(|e| match e {
                    fluent_syntax::ast::Entry::Message(m) => Some(m.id.name.to_owned()),
                    _ => None,
                })
                .collect();
            let mut bundle = FluentBundle::new_concurrent(vec![id.clone()]);
            // Emails are not bidirectional UIs: isolation marks would show up in plain text.
            bundle.set_use_isolating(false);
            bundle.set_formatter(Some(numbers));
            bundle.add_resource(resource).map_err(|errors| {
                format!(
                    "{}: {}",
                    path.display(),
                    errors
                        .iter()
                        .map(|e| e.to_string())
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            })?;
            locales.push(Locale {
                dates: dates_of(&id),
                tag,
                bundle,
                ids,
            });
        }
        let default_at = locales
            .iter()
            .position(|l| l.tag == default)
            .ok_or_else(|| {
                let have: Vec<&str> = locales.iter().map(|l| l.tag.as_str()).collect();
                format!(
                    "templates.default_locale is {default:?} but {} has no {default}.ftl (it has {have:?}); set it to one of those or add the file",
                    dir.display()
                )
            })?;
        Ok(Catalog {
            locales,
            default: default_at,
            counting: AtomicBool::new(false),
        })
    }

    /// The locale a user with `wanted` gets: the tag itself, then the tag with its last subtag
    /// dropped, and so on, then the default. Case does not matter, `_` reads as `-`.
    pub fn resolve(&self, wanted: Option<&str>) -> LocaleId {
        let Some(wanted) = wanted.map(str::trim).filter(|w| !w.is_empty()) else {
            return LocaleId(self.default);
        };
        let mut tag = wanted.replace('_', "-").to_ascii_lowercase();
        loop {
            if let Some(i) = self
                .locales
                .iter()
                .position(|l| l.tag.eq_ignore_ascii_case(&tag))
            {
                return LocaleId(i);
            }
            match tag.rfind('-') {
                Some(cut) => tag.truncate(cut),
                None => return LocaleId(self.default),
            }
        }
    }

    /// The locale whose tag is exactly `tag` (as [`Catalog::tag`] wrote it), else the default.
    pub fn by_tag(&self, tag: &str) -> LocaleId {
        LocaleId(
            self.locales
                .iter()
                .position(|l| l.tag == tag)
                .unwrap_or(self.default),
        )
    }

    pub fn tag(&self, id: LocaleId) -> &str {
        &self.locales[id.0].tag
    }

    /// Every locale's tag, the default first.
    pub fn tags(&self) -> Vec<String> {
        let default = &self.locales[self.default].tag;
        std::iter::once(default.clone())
            .chain(
                self.locales
                    .iter()
                    .filter(|l| &l.tag != default)
                    .map(|l| l.tag.clone()),
            )
            .collect()
    }

    pub fn default_locale(&self) -> LocaleId {
        LocaleId(self.default)
    }

    /// chrono's names of days and months for the locale.
    pub fn dates(&self, id: LocaleId) -> chrono::Locale {
        self.locales[id.0].dates
    }

    /// Message `id` in `locale`, or in the default locale (counted) when `locale` lacks it.
    pub fn message(
        &self,
        locale: LocaleId,
        id: &str,
        args: Option<&FluentArgs>,
    ) -> Result<String, String> {
        if let Some(text) = self.format(locale.0, id, args)? {
            return Ok(text);
        }
        if locale.0 != self.default
            && let Some(text) = self.format(self.default, id, args)?
        {
            if self.counting.load(Ordering::Relaxed) {
                let mut counts = FALLBACKS.lock().unwrap_or_else(|e| e.into_inner());
                *counts
                    .entry(self.locales[locale.0].tag.clone())
                    .or_default() += 1;
            }
            return Ok(text);
        }
        Err(format!(
            "no message {id:?} in {}.ftl, the default locale's messages; add it there",
            self.tag(self.default_locale())
        ))
    }

    fn format(
        &self,
        at: usize,
        id: &str,
        args: Option<&FluentArgs>,
    ) -> Result<Option<String>, String> {
        let locale = &self.locales[at];
        let Some(pattern) = locale.bundle.get_message(id).and_then(|m| m.value()) else {
            return Ok(None);
        };
        let mut errors = Vec::new();
        let text = locale.bundle.format_pattern(pattern, args, &mut errors);
        match errors.first() {
            None => Ok(Some(text.into_owned())),
            Some(e) => Err(format!(
                "message {id:?} of {}.ftl: {e} (pass every variable the message uses)",
                locale.tag
            )),
        }
    }

    /// For every locale but the default, the messages of the default it lacks.
    pub fn missing(&self) -> Vec<(String, Vec<String>)> {
        let all = &self.locales[self.default].ids;
        self.locales
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != self.default)
            .map(|(_, l)| (l.tag.clone(), all.difference(&l.ids).cloned().collect()))
            .collect()
    }

    /// From now on a message taken from the default locale is counted in [`fallbacks`].
    pub fn start_counting(&self) {
        self.counting.store(true, Ordering::Relaxed);
    }
}

/// The thousands separator of a language, from glibc's locale data (`pure-rust-locales`, the
/// data chrono writes day names with), made once per language by Fluent's memoizer.
struct Grouping(&'static str);

impl intl_memoizer::Memoizable for Grouping {
    type Args = ();
    type Error = std::convert::Infallible;

    fn construct(lang: LanguageIdentifier, _: ()) -> Result<Grouping, Self::Error> {
        let locale = dates_of(&lang);
        Ok(Grouping(pure_rust_locales::locale_match!(
            locale => LC_NUMERIC::THOUSANDS_SEP
        )))
    }
}

/// How Fluent writes a number placeable: a whole number of 1,000 or more with the language's
/// thousands separator; anything else as Fluent does (`None`).
fn numbers(
    value: &FluentValue,
    memo: &intl_memoizer::concurrent::IntlLangMemoizer,
) -> Option<String> {
    let FluentValue::Number(n) = value else {
        return None;
    };
    let whole = n.value.fract() == 0.0 && (1000.0..1e15).contains(&n.value.abs());
    if !whole || n.options.minimum_fraction_digits.is_some() {
        return None;
    }
    memo.with_try_get::<Grouping, _, _>((), |g| group(n.value as i64, g.0))
        .ok()
}

/// `n` with `separator` between groups of three digits.
fn group(n: i64, separator: &str) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + 4 * separator.len());
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push_str(separator);
        }
        out.push(c);
    }
    out
}

/// chrono's locale for a language: its own region when the tag has one (`fr-CA` → `fr_CA`),
/// else the language's home region (`fr` → `fr_FR`), else English.
fn dates_of(id: &LanguageIdentifier) -> chrono::Locale {
    let lang = id.language.as_str();
    let mut candidates = Vec::new();
    if let Some(region) = id.region {
        candidates.push(format!("{lang}_{}", region.as_str()));
    }
    candidates.push(format!("{lang}_{}", lang.to_ascii_uppercase()));
    if lang == "en" {
        candidates.push("en_GB".to_owned());
    }
    candidates
        .iter()
        .find_map(|c| chrono::Locale::try_from(c.as_str()).ok())
        .unwrap_or(chrono::Locale::en_GB)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/messages");
        Catalog::load(&dir, "en").unwrap()
    }

    #[test]
    fn a_locale_falls_back_by_subtag_then_to_the_default() {
        let c = catalog();
        for (wanted, got) in [
            (Some("fr-CA"), "fr"),
            (Some("fr_FR"), "fr"),
            (Some("FR"), "fr"),
            (Some("en-US"), "en"),
            (Some("de-DE"), "en"),
            (Some(""), "en"),
            (Some("not a tag"), "en"),
            (None, "en"),
        ] {
            assert_eq!(c.tag(c.resolve(wanted)), got, "{wanted:?}");
        }
    }

    #[test]
    fn french_is_complete_and_plural_rules_are_french() {
        let c = catalog();
        let missing = c.missing();
        assert!(missing.iter().all(|(_, ids)| ids.is_empty()), "{missing:?}");
        let fr = c.resolve(Some("fr"));
        let mut args = FluentArgs::new();
        args.set("n", 0);
        // French counts 0 as singular; English does not.
        assert_eq!(
            c.message(fr, "span-minutes", Some(&args)).unwrap(),
            "0 minute"
        );
        let en = c.resolve(Some("en"));
        assert_eq!(
            c.message(en, "span-minutes", Some(&args)).unwrap(),
            "0 minutes"
        );
    }

    #[test]
    fn a_message_missing_from_a_locale_comes_from_the_default_and_is_counted() {
        let dir = std::env::temp_dir().join(format!("herald-ftl-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        // Esperanto: no other test has it, so the process-wide count is this test's.
        std::fs::write(dir.join("en.ftl"), "hello = Hello\nbye = Bye\n").unwrap();
        std::fs::write(dir.join("eo.ftl"), "hello = Saluton\n").unwrap();
        let c = Catalog::load(&dir, "en").unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let eo = c.resolve(Some("eo"));
        let count = || {
            fallbacks()
                .into_iter()
                .find(|(l, _)| l == "eo")
                .map_or(0, |(_, n)| n)
        };
        assert_eq!(c.message(eo, "bye", None).unwrap(), "Bye");
        assert_eq!(count(), 0, "not counted before start_counting");
        c.start_counting();
        assert_eq!(c.message(eo, "hello", None).unwrap(), "Saluton");
        assert_eq!(c.message(eo, "bye", None).unwrap(), "Bye");
        assert_eq!(count(), 1);
        assert_eq!(c.missing(), vec![("eo".to_owned(), vec!["bye".to_owned()])]);
        let err = c.message(eo, "nowhere", None).unwrap_err();
        assert!(err.contains("en.ftl"), "{err}");
    }

    #[test]
    fn bad_files_and_a_missing_default_are_named() {
        let dir = std::env::temp_dir().join(format!("herald-ftl-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("en.ftl"), "hello = Hello\n").unwrap();
        let no_default = Catalog::load(&dir, "fr").unwrap_err();
        std::fs::write(dir.join("fr.ftl"), "hello = { $\n").unwrap();
        let syntax = Catalog::load(&dir, "en").unwrap_err();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            no_default.contains("templates.default_locale"),
            "{no_default}"
        );
        assert!(
            syntax.contains("fr.ftl") && syntax.contains("syntax"),
            "{syntax}"
        );
    }

    #[test]
    fn large_numbers_are_grouped_in_the_languages_way() {
        let c = catalog();
        let mut args = FluentArgs::new();
        args.set("minutes", 1250);
        args.set("sessions", 12);
        let en = c.resolve(Some("en"));
        let fr = c.resolve(Some("fr"));
        assert_eq!(
            c.message(en, "weekly_report-focus", Some(&args)).unwrap(),
            "1,250 minutes of focus in 12 sessions"
        );
        assert_eq!(
            c.message(fr, "weekly_report-focus", Some(&args)).unwrap(),
            "1\u{202f}250 minutes de concentration en 12 séances"
        );
        assert_eq!(group(-1234567, ","), "-1,234,567");
        assert_eq!(group(999, ","), "999");
    }

    #[test]
    fn dates_use_the_region_or_the_home_one() {
        let id = |t: &str| t.parse::<LanguageIdentifier>().unwrap();
        assert_eq!(dates_of(&id("fr")), chrono::Locale::fr_FR);
        assert_eq!(dates_of(&id("fr-CA")), chrono::Locale::fr_CA);
        assert_eq!(dates_of(&id("en")), chrono::Locale::en_GB);
    }
}
