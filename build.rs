//! Embeds every message catalogue in `i18n/` (`<lang>.toml`), so that adding a language is
//! adding a file. Writes `$OUT_DIR/i18n_files.rs`: a list of (language tag, file text).

use std::fmt::Write as _;
use std::path::Path;

/// A failed build script reports its error and stops the build; a message is all it needs.
type Result<T> = std::result::Result<T, String>;

fn main() -> Result<()> {
    // Read when the script runs, not baked in when it is compiled: cargo reuses one compiled
    // build script for every checkout that shares a target directory.
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .ok_or_else(|| String::from("CARGO_MANIFEST_DIR is not set"))?;
    let dir = Path::new(&manifest_dir).join("i18n");
    println!("cargo:rerun-if-changed={}", dir.display());
    // sqlx::migrate! embeds migrations/ at compile time but cannot tell cargo to watch it.
    println!("cargo:rerun-if-changed=migrations");
    let mut files: Vec<(String, String)> = Vec::new();
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("the i18n/ directory: {e}"))?;
    for entry in entries {
        let path = entry.map_err(|e| format!("an i18n/ entry: {e}"))?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let tag = path
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or_else(|| format!("{}: not a UTF-8 file name", path.display()))?
            .to_ascii_lowercase();
        // A BCP 47-like tag: it is matched against Accept-Language and put in <html lang>.
        let valid = tag.split('-').enumerate().all(|(i, part)| {
            let len_ok = if i == 0 {
                (2..=3).contains(&part.len())
            } else {
                (1..=8).contains(&part.len())
            };
            len_ok && part.chars().all(|c| c.is_ascii_alphanumeric())
        });
        if !valid {
            return Err(format!(
                "i18n/{tag}.toml: the file name must be a language tag such as de or pt-br"
            ));
        }
        println!("cargo:rerun-if-changed={}", path.display());
        files.push((tag, path.display().to_string()));
    }
    files.sort();
    if !files.iter().any(|(tag, _)| tag == "en") {
        return Err(String::from(
            "i18n/en.toml is required: it is the fallback language",
        ));
    }
    let mut out = String::from("pub(crate) static FILES: &[(&str, &str)] = &[\n");
    for (tag, path) in &files {
        let _ = writeln!(out, "    ({tag:?}, include_str!({path:?})),");
    }
    out.push_str("];\n");
    let out_dir = std::env::var("OUT_DIR").map_err(|e| format!("OUT_DIR: {e}"))?;
    let target = Path::new(&out_dir).join("i18n_files.rs");
    std::fs::write(target, out).map_err(|e| format!("writing i18n_files.rs: {e}"))
}
