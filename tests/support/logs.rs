//! Reading passgate's fail2ban file with the real `fail2ban-regex` and the shipped filter
//! (`fail2ban/filter.d/passgate.conf`). Any test that produces a fail2ban file (from
//! `Audit` directly, or from real HTTP requests) can check it with [`fail2ban_regex`].

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The filter shipped in the repository.
pub fn filter_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fail2ban/filter.d/passgate.conf")
}

/// What fail2ban-regex made of a log file.
#[derive(Debug)]
pub struct Fail2banReport {
    /// From the `Lines: N lines, I ignored, M matched, K missed` summary.
    pub lines: usize,
    pub matched: usize,
    pub missed: usize,
    /// The matched and missed lines as printed (`--print-all-matched`, `--print-all-missed`).
    pub matched_lines: Vec<String>,
    pub missed_lines: Vec<String>,
    /// One entry per match, in log order: the address fail2ban would ban and the time it
    /// parsed from the line (Unix seconds; `None` when the line had no timestamp it could
    /// read), from `-o row`.
    pub hosts: Vec<(IpAddr, Option<f64>)>,
}

fn run(args: &[&std::ffi::OsStr]) -> String {
    let output = Command::new("fail2ban-regex")
        // A POSIX TZ string (no tzdata needed) nine hours east of UTC: the filter must read
        // passgate's `Z` timestamps as UTC whatever the host's zone is.
        .env("TZ", "JST-9")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run fail2ban-regex ({e}). It comes with the Debian package `fail2ban` \
                 (scripts/install-deps test installs it); this test needs the real tool and \
                 does not skip"
            )
        });
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "fail2ban-regex {args:?} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(
        !stdout.contains("ERROR"),
        "fail2ban-regex reported an error:\n{stdout}\n{stderr}"
    );
    stdout
}

/// Lines of a `|- Matched line(s):` … `` `- `` block.
fn block(stdout: &str, header: &str) -> Vec<String> {
    let mut lines = stdout.lines().skip_while(|l| !l.starts_with(header));
    if lines.next().is_none() {
        return Vec::new();
    }
    lines
        .take_while(|l| !l.starts_with("`-"))
        .map(|l| l.strip_prefix("|  ").unwrap_or(l).to_string())
        .collect()
}

/// Runs `fail2ban-regex` twice on `log` with the shipped filter: once with
/// `--print-all-matched --print-all-missed` for the summary and the lines, once with
/// `-o row` for the captured addresses and parsed times. Panics if the tool is missing.
pub fn fail2ban_regex(log: &Path) -> Fail2banReport {
    let filter = filter_path();
    let stdout = run(&[
        "--print-all-matched".as_ref(),
        "--print-all-missed".as_ref(),
        log.as_os_str(),
        filter.as_os_str(),
    ]);
    let summary = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Lines: "))
        .unwrap_or_else(|| panic!("no `Lines:` summary in fail2ban-regex output:\n{stdout}"));
    // "4 lines, 0 ignored, 2 matched, 2 missed"
    let numbers: Vec<usize> = summary
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().expect("number"))
        .collect();
    assert_eq!(numbers.len(), 4, "unexpected summary {summary:?}");
    let matched_lines = block(&stdout, "|- Matched line(s):");
    let missed_lines = block(&stdout, "|- Missed line(s):");

    let rows = run(&[
        "-o".as_ref(),
        "row".as_ref(),
        log.as_os_str(),
        filter.as_os_str(),
    ]);
    // ['203.0.113.7',\t1795380482,\t{'ip4': '203.0.113.7', 'ip6': None}],
    // ['6.6.6.6',\tNone,\t{...}],   (a match without a readable timestamp)
    let hosts = rows
        .lines()
        .filter(|l| l.starts_with('['))
        .map(|l| {
            let mut fields = l.trim_start_matches('[').split(",\t");
            let ip = fields.next().unwrap_or_default().trim_matches('\'');
            let time = fields.next().unwrap_or_default();
            (
                ip.parse()
                    .unwrap_or_else(|_| panic!("not an address in row {l:?}")),
                match time {
                    "None" => None,
                    t => Some(t.parse().unwrap_or_else(|_| panic!("no time in row {l:?}"))),
                },
            )
        })
        .collect();
    Fail2banReport {
        lines: numbers[0],
        matched: numbers[2],
        missed: numbers[3],
        matched_lines,
        missed_lines,
        hosts,
    }
}

/// Reverses passgate's percent-encoding of a `user=` value (for checking that nothing was
/// lost). `None` when the text is not well-formed encoding.
pub fn percent_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}
