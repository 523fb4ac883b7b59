//! What `passgate audit` and the admin download share: reading the time filters, writing
//! rows as CSV or JSON lines, and paging through the chain oldest first.
//!
//! Usernames and user agents are typed by strangers. CSV is quoted per RFC 4180 and cells
//! a spreadsheet would run as a formula get a leading `'`; JSON is written by serde_json,
//! which escapes control characters.

use sqlx::SqliteConnection;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime, Time};

use super::chain::StoredRow;
use super::query::{self, Filter, ROW_FIELDS};

/// How an export writes its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line ([`query::row_json`]).
    Json,
    /// RFC 4180, `\r\n` line ends, columns of [`ROW_FIELDS`].
    Csv,
}

impl Format {
    /// One row, line end included.
    pub fn line(self, row: &StoredRow) -> String {
        match self {
            Format::Json => json_line(row),
            Format::Csv => csv_line(row),
        }
    }
}

/// One row as a JSON line (`\n` included).
pub fn json_line(row: &StoredRow) -> String {
    let mut line = query::row_json(row).to_string();
    line.push('\n');
    line
}

/// The CSV header with every name quoted like a cell, as `passgate audit` writes it.
pub fn csv_header() -> String {
    let cells: Vec<String> = ROW_FIELDS.iter().map(|f| csv_cell(f)).collect();
    format!("{}\r\n", cells.join(","))
}

/// The CSV header with bare names, as the admin download has always written it. (The field
/// names need no quoting, so both headers read the same in any CSV reader.)
pub fn csv_header_bare() -> String {
    format!("{}\r\n", ROW_FIELDS.join(","))
}

/// One row as CSV (`\r\n` included): the columns of [`ROW_FIELDS`], taken from the same JSON
/// object as [`json_line`] so the two formats agree.
pub fn csv_line(row: &StoredRow) -> String {
    let value = query::row_json(row);
    let cells: Vec<String> = ROW_FIELDS
        .iter()
        .map(|field| match value.get(field) {
            None | Some(serde_json::Value::Null) => String::new(),
            Some(serde_json::Value::String(s)) => csv_cell(s),
            Some(other) => csv_cell(&other.to_string()),
        })
        .collect();
    format!("{}\r\n", cells.join(","))
}

/// One CSV cell: RFC 4180 quoting (always quoted, `"` doubled) and, for a cell a spreadsheet
/// would evaluate (starting with `=`, `+`, `-`, `@`, tab or CR), a leading `'` so it stays
/// text. (A missing value is written as an empty, unquoted cell; JSON keeps `null`.)
pub fn csv_cell(text: &str) -> String {
    let neutralise = text.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let mut out = String::with_capacity(text.len() + 3);
    out.push('"');
    if neutralise {
        out.push('\'');
    }
    for c in text.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The chain's matching rows, oldest first, one page at a time, by id: every page is a
/// fresh query after the last id seen, so a caller may hold a connection across pages (one
/// snapshot, the CLI) or take one per page (the web download, which must not pin a pooled
/// connection while a slow client reads).
#[derive(Debug, Clone)]
pub struct Pages {
    filter: Filter,
    after_id: i64,
    /// Rows still allowed; `None`: no cap.
    left: Option<usize>,
    done: bool,
}

impl Pages {
    /// Pages of `filter.limit` rows (0: the default page size), at most `max_rows` in all.
    pub fn new(filter: Filter, max_rows: Option<usize>) -> Self {
        Self {
            filter,
            after_id: 0,
            left: max_rows,
            done: false,
        }
    }

    /// The next page; `None` once the rows (or the cap) are used up.
    pub async fn next(
        &mut self,
        conn: &mut SqliteConnection,
    ) -> Result<Option<Vec<StoredRow>>, sqlx::Error> {
        if self.done || self.left == Some(0) {
            return Ok(None);
        }
        let mut page = query::page_oldest_first(conn, &self.filter, self.after_id).await?;
        // A short page is the last one: saves the query that would come back empty.
        self.done = i64::try_from(page.len()).unwrap_or(i64::MAX) < self.filter.page_size();
        if let Some(left) = &mut self.left {
            page.truncate(*left);
            *left -= page.len();
        }
        match page.last() {
            Some(last) => self.after_id = last.id,
            None => return Ok(None),
        }
        Ok(Some(page))
    }
}

/// `--since`/`--until` and the page's filters: RFC 3339 (`2026-11-22T10:00:00Z`, offsets
/// and fractions allowed, or a bare date meaning midnight UTC) or a duration before now
/// (`90s`, `30m`, `24h`, `7d`, `2w`). Returns UTC milliseconds.
pub fn parse_time(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if let Some(ms) = parse_relative(text)? {
        return Ok(super::store::now_ms().saturating_sub(ms));
    }
    parse_rfc3339(text).ok_or_else(|| {
        format!("{text:?} is neither RFC 3339 (2026-11-22T10:00:00Z) nor relative (30m, 24h, 7d)")
    })
}

/// `Ok(None)` when `text` does not look relative at all; `Err` for a relative form that
/// does not parse (so `7x` is reported, not misread).
fn parse_relative(text: &str) -> Result<Option<i64>, String> {
    let Some(unit) = text.chars().last() else {
        return Ok(None);
    };
    let digits = &text[..text.len() - unit.len_utf8()];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    let unit_ms: i64 = match unit {
        's' => 1_000,
        'm' => 60_000,
        'h' => 3_600_000,
        'd' => 86_400_000,
        'w' => 604_800_000,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?}; use s, m, h, d or w"
            ))
        }
    };
    let n: i64 = digits
        .parse()
        .map_err(|_| format!("{text:?}: number too large"))?;
    n.checked_mul(unit_ms)
        .map(Some)
        .ok_or_else(|| format!("{text:?}: too far back"))
}

/// A full RFC 3339 timestamp, or its `full-date` alone (midnight UTC). Milliseconds: finer
/// digits are dropped, as the store keeps milliseconds.
fn parse_rfc3339(text: &str) -> Option<i64> {
    let at = match OffsetDateTime::parse(text, &Rfc3339) {
        Ok(at) => at,
        Err(_) => Date::parse(text, format_description!("[year]-[month]-[day]"))
            .ok()?
            .with_time(Time::MIDNIGHT)
            .assume_utc(),
    };
    i64::try_from(at.unix_timestamp_nanos().div_euclid(1_000_000)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_parses(cases: &[(&str, i64)]) {
        for &(text, ms) in cases {
            assert_eq!(parse_time(text), Ok(ms), "{text}");
        }
    }

    fn assert_refused(texts: &[&str]) {
        for text in texts {
            assert!(parse_time(text).is_err(), "{text}");
        }
    }

    #[test]
    fn parses_times() {
        assert_parses(&[
            ("2026-11-22T10:00:00Z", 1_795_341_600_000),
            ("2026-11-22T10:00:00.5Z", 1_795_341_600_500),
            ("2026-11-22T11:00:00+01:00", 1_795_341_600_000),
            ("2026-11-22", 1_795_305_600_000),
        ]);
        assert_refused(&["2026-13-22T10:00:00Z", "yesterday", "7x"]);
        let now = crate::audit::store::now_ms();
        let day = parse_time("1d").expect("relative");
        assert!((now - 86_400_000 - day).abs() < 5_000);
        assert!(parse_time("30m").is_ok() && parse_time("24h").is_ok());
    }

    #[test]
    fn parses_the_other_forms_the_hand_parser_took() {
        // Lower-case separators, a space, fractions finer than a millisecond.
        assert_parses(&[
            ("2026-11-22t10:00:00z", 1_795_341_600_000),
            ("2026-11-22 10:00:00Z", 1_795_341_600_000),
            ("2026-11-22T10:00:00.123987Z", 1_795_341_600_123),
            ("2026-11-22T05:30:00-04:30", 1_795_341_600_000),
        ]);
        // No offset; neither seconds nor offset; no such day.
        assert_refused(&["2026-11-22T10:00:00", "2026-11-22T10:00", "2026-02-30"]);
    }

    #[test]
    fn csv_neutralises_formulas_and_quotes() {
        for (cell, quoted) in [
            ("alice", "\"alice\""),
            ("=cmd|' /C calc'!A0", "\"'=cmd|' /C calc'!A0\""),
            ("a\"b,c", "\"a\"\"b,c\""),
            ("\tx", "\"'\tx\""),
            ("-1", "\"'-1\""),
        ] {
            assert_eq!(csv_cell(cell), quoted, "{cell}");
        }
    }

    #[test]
    fn headers_name_the_row_fields() {
        assert!(csv_header().starts_with("\"id\",\"time\",\"last_time\","));
        assert!(csv_header_bare().starts_with("id,time,last_time,count,event"));
        assert!(csv_header().ends_with("\r\n") && csv_header_bare().ends_with("\r\n"));
    }
}
