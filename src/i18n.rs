//! The message catalogue: every text of the pages, in every language, from the files
//! `i18n/<lang>.toml` embedded at build time (build.rs lists the directory, so a new language
//! is a new file). Keys are dotted paths (`[login] title = "…"` is `login.title`); values may
//! hold named placeholders (`{min}`). A key missing in one language falls back to English.
//!
//! Code and templates name keys only as literals in `tr("…")`, `tr_with("…", …)` or
//! `tr_n("…", …)` (plural: `….one` / `….other`); a test scans for these calls, so every key
//! used exists in every language.

use std::collections::HashMap;
use std::fmt::{self, Display, Write as _};
use std::sync::LazyLock;

include!(concat!(env!("OUT_DIR"), "/i18n_files.rs"));

/// The language used when the browser asks for none that the catalogue has.
pub const FALLBACK: &str = "en";
/// Bounds the work spent on a hostile `Accept-Language` header.
const MAX_RANGES: usize = 32;

pub struct Language {
    tag: &'static str,
    messages: HashMap<String, String>,
}

struct Catalogue {
    languages: Vec<Language>,
    fallback: usize,
}

static CATALOGUE: LazyLock<Catalogue> = LazyLock::new(load);

fn load() -> Catalogue {
    let mut languages = Vec::new();
    for (tag, text) in FILES {
        match parse(text) {
            Ok(messages) => languages.push(Language { tag, messages }),
            // The unit tests parse every file; this is only a guard against a broken build.
            Err(e) => tracing::error!(language = tag, error = %e, "message catalogue unreadable"),
        }
    }
    let fallback = match languages.iter().position(|l| l.tag == FALLBACK) {
        Some(i) => i,
        None => {
            languages.push(Language {
                tag: FALLBACK,
                messages: HashMap::new(),
            });
            languages.len() - 1
        }
    };
    Catalogue {
        languages,
        fallback,
    }
}

/// Flattens one catalogue file into `dotted.key → text`.
pub fn parse(text: &str) -> Result<HashMap<String, String>, String> {
    let table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut out = HashMap::new();
    flatten("", &table, &mut out)?;
    Ok(out)
}

fn flatten(
    prefix: &str,
    table: &toml::Table,
    out: &mut HashMap<String, String>,
) -> Result<(), String> {
    for (name, value) in table {
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        match value {
            toml::Value::String(s) => {
                out.insert(key, s.clone());
            }
            toml::Value::Table(t) => flatten(&key, t, out)?,
            _ => return Err(format!("{key}: every value must be text")),
        }
    }
    Ok(())
}

/// The embedded catalogue files, as (language tag, file text); for tests and tools.
pub fn files() -> &'static [(&'static str, &'static str)] {
    FILES
}

/// The language of one response. Cheap to copy; every lookup falls back to English.
#[derive(Clone, Copy)]
pub struct Lang(&'static Language);

impl fmt::Debug for Lang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Lang({})", self.0.tag)
    }
}

impl PartialEq for Lang {
    fn eq(&self, other: &Self) -> bool {
        self.0.tag == other.0.tag
    }
}

impl Lang {
    pub fn english() -> Lang {
        let catalogue = &*CATALOGUE;
        Lang(&catalogue.languages[catalogue.fallback])
    }

    /// The language tag a file provides (`"de"`), or `None` when there is no such file.
    pub fn by_tag(tag: &str) -> Option<Lang> {
        let tag = tag.to_ascii_lowercase();
        CATALOGUE.languages.iter().find(|l| l.tag == tag).map(Lang)
    }

    /// Picks the language from an `Accept-Language` header: the highest q-value the
    /// catalogue can serve (`de-CH` is served by `de`), ties in the order sent; English
    /// when none fits. `q=0` means "not this one".
    pub fn negotiate(accept_language: Option<&str>) -> Lang {
        let Some(header) = accept_language else {
            return Lang::english();
        };
        let mut ranges: Vec<(u16, usize, &str)> = Vec::new();
        for (order, item) in header.split(',').take(MAX_RANGES).enumerate() {
            let mut parts = item.split(';');
            let range = parts.next().unwrap_or_default().trim();
            if range.is_empty() {
                continue;
            }
            let mut quality = Some(1000);
            for param in parts {
                let (name, value) = param.split_once('=').unwrap_or((param, ""));
                if name.trim().eq_ignore_ascii_case("q") {
                    quality = parse_quality(value);
                }
            }
            match quality {
                Some(q) if q > 0 => ranges.push((q, order, range)),
                _ => {}
            }
        }
        ranges.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        for (_, _, range) in ranges {
            if range == "*" {
                return Lang::english();
            }
            // Longest match first: `pt-BR-x` tries `pt-br-x`, `pt-br`, then `pt`.
            let mut tag = range;
            loop {
                if let Some(lang) = Lang::by_tag(tag) {
                    return lang;
                }
                match tag.rsplit_once('-') {
                    Some((shorter, _)) => tag = shorter,
                    None => break,
                }
            }
        }
        Lang::english()
    }

    /// The tag for `<html lang>`.
    pub fn tag(&self) -> &'static str {
        self.0.tag
    }

    fn lookup(&self, key: &str) -> Option<&'static str> {
        self.0
            .messages
            .get(key)
            .or_else(|| Lang::english().0.messages.get(key))
            .map(String::as_str)
    }

    /// The text of `key`; the key itself if no language has it (a test prevents that).
    pub fn tr(&self, key: &'static str) -> &'static str {
        self.lookup(key).unwrap_or(key)
    }

    /// The text of `key` with its `{name}` placeholders filled in.
    pub fn tr_with(&self, key: &'static str, args: &[(&str, &dyn Display)]) -> String {
        fill(self.tr(key), args)
    }

    /// `key.one` when `n` is 1, else `key.other`; `{n}` is filled in, with `args`.
    pub fn tr_n(&self, key: &'static str, n: u64, args: &[(&str, &dyn Display)]) -> String {
        let form = if n == 1 { "one" } else { "other" };
        let full = format!("{key}.{form}");
        let text = self.lookup(&full).unwrap_or(key);
        let mut all: Vec<(&str, &dyn Display)> = vec![("n", &n)];
        all.extend_from_slice(args);
        fill(text, &all)
    }
}

fn parse_quality(value: &str) -> Option<u16> {
    let q: f32 = value.trim().parse().ok()?;
    (q.is_finite() && (0.0..=1.0).contains(&q)).then(|| (q * 1000.0).round() as u16)
}

/// One pass, so a value that itself contains `{…}` is never expanded again.
fn fill(template: &str, args: &[(&str, &dyn Display)]) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let arg = after
            .find('}')
            .and_then(|close| Some((close, args.iter().find(|(n, _)| *n == &after[..close])?)));
        match arg {
            Some((close, (_, value))) => {
                let _ = write!(out, "{value}");
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The `{name}` placeholders of a text, for the consistency test.
pub fn placeholders(text: &str) -> Vec<&str> {
    let mut names: Vec<&str> = text
        .split('{')
        .skip(1)
        .filter_map(|part| part.split_once('}').map(|(name, _)| name))
        .filter(|name| {
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use super::*;

    fn catalogues() -> Vec<(&'static str, HashMap<String, String>)> {
        files()
            .iter()
            .map(|(tag, text)| {
                let parsed = parse(text).unwrap_or_else(|e| panic!("i18n/{tag}.toml: {e}"));
                (*tag, parsed)
            })
            .collect()
    }

    #[test]
    fn every_language_has_every_key_and_no_other() {
        let all = catalogues();
        let (_, english) = all.iter().find(|(t, _)| *t == FALLBACK).expect("en.toml");
        assert!(all.len() >= 2, "English and German are shipped");
        let en_keys: BTreeSet<&String> = english.keys().collect();
        for (tag, messages) in &all {
            let keys: BTreeSet<&String> = messages.keys().collect();
            let missing: Vec<_> = en_keys.difference(&keys).collect();
            let extra: Vec<_> = keys.difference(&en_keys).collect();
            assert!(missing.is_empty(), "i18n/{tag}.toml lacks {missing:?}");
            assert!(
                extra.is_empty(),
                "i18n/{tag}.toml has keys en.toml lacks: {extra:?}"
            );
            for (key, text) in messages {
                assert_eq!(
                    placeholders(text),
                    placeholders(&english[key]),
                    "i18n/{tag}.toml {key}: placeholders differ from English"
                );
                assert!(!text.trim().is_empty(), "i18n/{tag}.toml {key} is empty");
            }
        }
    }

    /// The literal key of every `.tr(`, `.tr_with(` and `.tr_n(` call in templates/ and src/.
    fn used_keys() -> BTreeSet<String> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        for dir in ["templates", "src"] {
            collect(&root.join(dir), &mut files);
        }
        let mut keys = BTreeSet::new();
        for path in files {
            if path.ends_with("i18n.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("readable source");
            for (call, plural) in [(".tr(", false), (".tr_with(", false), (".tr_n(", true)] {
                for (at, _) in text.match_indices(call) {
                    let Some(rest) = text[at + call.len()..].trim_start().strip_prefix('"') else {
                        continue;
                    };
                    let key = rest.split('"').next().unwrap_or_default();
                    if plural {
                        keys.insert(format!("{key}.one"));
                        keys.insert(format!("{key}.other"));
                    } else {
                        keys.insert(key.to_string());
                    }
                }
            }
        }
        keys
    }

    fn collect(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("readable dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                collect(&path, out);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("rs" | "html")
            ) {
                out.push(path);
            }
        }
    }

    #[test]
    fn every_key_used_exists_and_every_key_is_used() {
        let used = used_keys();
        assert!(used.len() > 100, "the scan found the calls: {}", used.len());
        let all = catalogues();
        let (_, english) = all.iter().find(|(t, _)| *t == FALLBACK).expect("en.toml");
        let missing: Vec<_> = used.iter().filter(|k| !english.contains_key(*k)).collect();
        assert!(
            missing.is_empty(),
            "keys used but not in en.toml: {missing:?}"
        );
        let unused: Vec<_> = english.keys().filter(|k| !used.contains(*k)).collect();
        assert!(
            unused.is_empty(),
            "keys in en.toml that nothing uses: {unused:?}"
        );
    }

    #[test]
    fn accept_language_picks_the_best_language_served() {
        let pick = |header: &str| Lang::negotiate(Some(header)).tag();
        assert_eq!(pick("de-DE,de;q=0.9,en;q=0.8"), "de");
        assert_eq!(pick("fr"), "en");
        assert_eq!(pick("fr-FR, de;q=0.5, en;q=0.4"), "de");
        assert_eq!(pick("en;q=0.2, de-CH;q=0.8"), "de");
        assert_eq!(pick("de;q=0, en"), "en");
        assert_eq!(pick("de;q=0"), "en");
        assert_eq!(pick("DE"), "de");
        assert_eq!(pick("*"), "en");
        assert_eq!(pick("de;q=abc, en"), "en");
        assert_eq!(pick(";;,,=,q=1"), "en");
        assert_eq!(pick(""), "en");
        assert_eq!(Lang::negotiate(None).tag(), "en");
        // Only the first ranges of a hostile header are read.
        let long = format!("{}de", "xx;q=0.1,".repeat(100));
        assert_eq!(pick(&long), "en");
    }

    #[test]
    fn lookups_fill_placeholders_once_and_fall_back() {
        let de = Lang::negotiate(Some("de"));
        assert_eq!(de.tr("login.title"), "Anmelden");
        assert_eq!(Lang::english().tr("login.title"), "Sign in");
        assert_eq!(
            de.tr_n("totp.too_many", 1, &[])
                .matches("1 Minute ")
                .count(),
            1
        );
        assert!(de.tr_n("totp.too_many", 3, &[]).contains("3 Minuten"));
        // A value holding `{…}` is not expanded again.
        let text = Lang::english().tr_with("truenas.other", &[("message", &"{message}")]);
        assert_eq!(text, "TrueNAS refused the new password: {message}");
        assert_eq!(fill("a {x} {y} {", &[("x", &1)]), "a 1 {y} {");
    }
}
