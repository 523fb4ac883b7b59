//! Server-rendered SVG charts of an attack, for the admin audit page: failed and refused
//! attempts over time (stacked bars, two series and a legend) and the top failing addresses
//! and usernames (horizontal bars).
//!
//! Pure functions from data to markup, so they work without JavaScript and are tested
//! without a server. The page's CSP (`style-src 'self'`) forbids `style=` attributes and
//! `<style>` elements, so the markup carries geometry as presentation attributes and its
//! looks as classes styled in `static/style.css`.
//!
//! Every chart is `role="img"`, named by its `<title>` and `<desc>` (`aria-labelledby`), and
//! followed by the same numbers as a `<table>` in a `<details>`, for screen readers and for
//! anyone who wants the exact values. Usernames are hostile text: every text that goes
//! into the markup passes [`escape`].

use std::fmt::{self, Write as _};

use time::OffsetDateTime;

use crate::audit::activity::{Bucket, Series, HOUR_MS, MINUTE_MS};
use crate::audit::query::Tally;
use crate::i18n::Lang;

/// Markup made by this module: every text in it went through [`escape`], so a template may
/// emit it unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Markup(String);

impl Markup {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Markup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Text for an HTML or SVG text node or a quoted attribute. Control characters become
/// U+FFFD: they are not allowed in XML, and a chart has no use for them.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// At most `max` characters, the rest cut and marked with "…", so a long username cannot
/// push a bar chart's labels over its bars. The full text is in the table.
fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// A value axis from 0 to `top` with a tick every `step`; `step` is 1, 2 or 5 times a power
/// of ten, and there are at most five steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scale {
    pub top: i64,
    pub step: i64,
}

impl Scale {
    /// The values with a tick, 0 first.
    pub fn ticks(&self) -> Vec<i64> {
        let steps = self.top / self.step;
        (0..=steps).map(|i| i * self.step).collect()
    }
}

/// The smallest round scale that holds `max`. Counts are whole numbers, so a step is never
/// below 1; an empty chart (max 0) gets 0..1.
pub fn scale(max: i64) -> Scale {
    const MAX_STEPS: i64 = 5;
    let max = max.max(1);
    let mut power: i64 = 1;
    loop {
        for m in [1, 2, 5] {
            let step = power.saturating_mul(m);
            if step.saturating_mul(MAX_STEPS) >= max {
                let steps = max / step + i64::from(max % step != 0);
                return Scale {
                    top: steps.saturating_mul(step),
                    step,
                };
            }
        }
        power = power.saturating_mul(10);
    }
}

/// `HH:MM` (UTC) of a bucket start.
fn clock(ms: i64) -> String {
    match utc(ms) {
        Some(t) => format!("{:02}:{:02}", t.hour(), t.minute()),
        None => ms.to_string(),
    }
}

/// `MM-DD` at midnight (UTC), `HH:MM` otherwise.
fn clock_or_day(ms: i64) -> String {
    if ms.rem_euclid(24 * HOUR_MS) == 0 {
        day(ms)
    } else {
        clock(ms)
    }
}

/// `MM-DD` (UTC).
fn day(ms: i64) -> String {
    match utc(ms) {
        Some(t) => format!("{:02}-{:02}", u8::from(t.month()), t.day()),
        None => ms.to_string(),
    }
}

/// `YYYY-MM-DD HH:MM` (UTC).
fn stamp(ms: i64) -> String {
    match utc(ms) {
        Some(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute()
        ),
        None => ms.to_string(),
    }
}

fn utc(ms: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)).ok()
}

/// Coordinates with one decimal: enough for a 400-unit viewBox, and short markup.
fn n(v: f64) -> String {
    let s = format!("{v:.1}");
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
}

const WIDTH: f64 = 400.0;
const MAX_TIME_LABELS: i64 = 6;

/// Opens a chart's box and its `<svg>`, an image named by `title` and described by `desc`
/// through ids derived from `id`.
fn open_svg(s: &mut String, id: &str, height: f64, title: &str, desc: &str) {
    let id = escape(id);
    let _ = write!(
        s,
        "<div class=\"chart\"><svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart-svg\" \
         viewBox=\"0 0 {w} {h}\" width=\"100%\" role=\"img\" \
         aria-labelledby=\"{id}-title {id}-desc\" id=\"{id}\">\
         <title id=\"{id}-title\">{title}</title><desc id=\"{id}-desc\">{desc}</desc>",
        w = n(WIDTH),
        h = n(height),
        title = escape(title),
        desc = escape(desc),
    );
}

/// A mark on the horizontal axis at `base`: a vertical line of `class` from `from_y` to just
/// below the axis, and `label` under it.
fn write_x_tick(s: &mut String, class: &str, x: f64, from_y: f64, base: f64, label: &str) {
    let _ = write!(
        s,
        "<line class=\"{class}\" x1=\"{x}\" x2=\"{x}\" y1=\"{y1}\" y2=\"{y2}\"/>\
         <text class=\"tick\" x=\"{x}\" y=\"{ty}\" text-anchor=\"middle\">{label}</text>",
        x = n(x),
        y1 = n(from_y),
        y2 = n(base + 4.0),
        ty = n(base + 16.0),
        label = escape(label),
    );
}

/// In place of the bars of a chart with nothing to draw, centred on `x`.
fn write_empty_note(s: &mut String, t: Lang, x: f64, y: f64) {
    let _ = write!(
        s,
        "<text class=\"empty\" x=\"{x}\" y=\"{y}\" text-anchor=\"middle\">{text}</text>",
        x = n(x),
        y = n(y),
        text = escape(t.tr("charts.no_failures")),
    );
}

/// Opens the folded table of a chart's numbers, up to its first body row.
fn open_table(s: &mut String, t: Lang, title: &str, headings: &[&str]) {
    let _ = write!(
        s,
        "<details class=\"chart-data\"><summary>{summary}</summary>\
         <table><caption>{title}</caption><thead><tr>",
        summary = escape(t.tr("charts.show_table")),
        title = escape(title),
    );
    for heading in headings {
        let _ = write!(s, "<th scope=\"col\">{}</th>", escape(heading));
    }
    s.push_str("</tr></thead><tbody>");
}

/// The x labels of a time series: the interval between two labels, and how to write them.
/// Labels sit on UTC multiples of the interval.
fn label_interval(step_ms: i64, len: usize) -> (i64, fn(i64) -> String) {
    const DAY: i64 = 24 * HOUR_MS;
    let candidates: &[i64] = if step_ms < HOUR_MS {
        &[1, 2, 5, 10, 15, 30, 60]
    } else {
        &[1, 2, 3, 4, 6, 12, 24, 48, 96, 168, 336, 744]
    };
    let unit = if step_ms < HOUR_MS {
        MINUTE_MS
    } else {
        HOUR_MS
    };
    let span = step_ms.saturating_mul(i64::try_from(len).unwrap_or(i64::MAX));
    let interval = candidates
        .iter()
        .map(|c| c * unit)
        .find(|i| span / i <= MAX_TIME_LABELS)
        .unwrap_or(31 * DAY);
    // An hourly chart crosses midnight: name the day there, so two `04:00` are told apart.
    let format: fn(i64) -> String = match (interval < DAY, step_ms < HOUR_MS) {
        (false, _) => day,
        (true, true) => clock,
        (true, false) => clock_or_day,
    };
    (interval, format)
}

/// A bar chart of `series` (failures below, refusals stacked on top), then its table.
/// `id` must be unique on the page; `title` names the chart.
pub fn time_chart(t: Lang, id: &str, title: &str, series: &Series) -> Markup {
    let plan = series.plan;
    let per_hour = plan.step_ms >= HOUR_MS;
    let (left, right, top, bottom) = (58.0, 10.0, 30.0, 42.0);
    let height = 230.0;
    let plot_w = WIDTH - left - right;
    let plot_h = height - top - bottom;
    let base = top + plot_h;
    let max = series.buckets.iter().map(Bucket::total).max().unwrap_or(0);
    let sc = scale(max);
    let from = stamp(plan.from_ms.max(plan.start_ms));
    let to = stamp(plan.to_ms);
    let desc = if series.is_empty() {
        t.tr_with("charts.series_empty", &[("from", &from), ("to", &to)])
    } else {
        let peak = series
            .buckets
            .iter()
            .max_by_key(|b| (b.total(), std::cmp::Reverse(b.start_ms)))
            .copied()
            .unwrap_or_default();
        t.tr_with(
            "charts.series_desc",
            &[
                ("from", &from),
                ("to", &to),
                ("failures", &series.failures()),
                ("refusals", &series.refusals()),
                ("peak_time", &stamp(peak.start_ms)),
                ("peak", &peak.total()),
            ],
        )
    };
    let mut s = String::new();
    open_svg(&mut s, id, height, title, &desc);
    // Legend.
    for (i, (class, label)) in [
        ("bar-failures", t.tr("charts.legend_failures")),
        ("bar-refusals", t.tr("charts.legend_refusals")),
    ]
    .iter()
    .enumerate()
    {
        let x = left + 170.0 * i as f64;
        let _ = write!(
            s,
            "<rect class=\"{class}\" x=\"{x}\" y=\"8\" width=\"12\" height=\"12\"/>\
             <text class=\"legend\" x=\"{tx}\" y=\"18\">{label}</text>",
            x = n(x),
            tx = n(x + 17.0),
            label = escape(label),
        );
    }
    // Value axis: grid lines, round ticks, its title.
    for v in sc.ticks() {
        let y = base - plot_h * v as f64 / sc.top as f64;
        let _ = write!(
            s,
            "<line class=\"grid\" x1=\"{l}\" x2=\"{r}\" y1=\"{y}\" y2=\"{y}\"/>\
             <text class=\"tick\" x=\"{tx}\" y=\"{ty}\" text-anchor=\"end\">{v}</text>",
            l = n(left),
            r = n(left + plot_w),
            y = n(y),
            tx = n(left - 5.0),
            ty = n(y + 4.0),
        );
    }
    let axis_label = if per_hour {
        t.tr("charts.axis_per_hour")
    } else {
        t.tr("charts.axis_per_minute")
    };
    let _ = write!(
        s,
        "<text class=\"axis-title\" transform=\"rotate(-90)\" x=\"{x}\" y=\"13\" \
         text-anchor=\"middle\">{label}</text>",
        x = n(-(top + plot_h / 2.0)),
        label = escape(axis_label),
    );
    // Bars, each with a tooltip.
    let len = series.buckets.len().max(1) as f64;
    let slot = plot_w / len;
    let bar_w = if slot >= 3.0 { slot * 0.8 } else { slot };
    for (i, b) in series.buckets.iter().enumerate() {
        if b.total() == 0 {
            continue;
        }
        let x = left + slot * i as f64 + (slot - bar_w) / 2.0;
        let h_f = plot_h * b.failures as f64 / sc.top as f64;
        let h_r = plot_h * b.refusals as f64 / sc.top as f64;
        let tip = t.tr_with(
            "charts.bar_title",
            &[
                ("time", &stamp(b.start_ms)),
                ("failures", &b.failures),
                ("refusals", &b.refusals),
            ],
        );
        let _ = write!(s, "<g><title>{}</title>", escape(&tip));
        for (class, y, h) in [
            ("bar-failures", base - h_f, h_f),
            ("bar-refusals", base - h_f - h_r, h_r),
        ] {
            if h > 0.0 {
                let _ = write!(
                    s,
                    "<rect class=\"{class}\" x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{h}\"/>",
                    x = n(x),
                    y = n(y),
                    w = n(bar_w),
                    h = n(h),
                );
            }
        }
        s.push_str("</g>");
    }
    if series.is_empty() {
        write_empty_note(&mut s, t, left + plot_w / 2.0, top + plot_h / 2.0);
    }
    // Time axis: the base line, labels on round UTC times, its title.
    let _ = write!(
        s,
        "<line class=\"axis\" x1=\"{l}\" x2=\"{r}\" y1=\"{y}\" y2=\"{y}\"/>",
        l = n(left),
        r = n(left + plot_w),
        y = n(base),
    );
    let (interval, format) = label_interval(plan.step_ms, series.buckets.len());
    for (i, b) in series.buckets.iter().enumerate() {
        if b.start_ms.rem_euclid(interval) != 0 {
            continue;
        }
        let x = left + slot * i as f64;
        write_x_tick(&mut s, "axis", x, base, base, &format(b.start_ms));
    }
    let _ = write!(
        s,
        "<text class=\"axis-title\" x=\"{x}\" y=\"{y}\" text-anchor=\"middle\">{label}</text></svg>",
        x = n(left + plot_w / 2.0),
        y = n(height - 6.0),
        label = escape(t.tr("charts.axis_time")),
    );
    if plan.capped {
        let max_hours = plan.len;
        let _ = write!(
            s,
            "<p class=\"hint\">{}</p>",
            escape(&t.tr_with(
                "charts.capped",
                &[("max", &max_hours), ("from", &stamp(plan.start_ms))]
            ))
        );
    }
    // The numbers: buckets with attempts only, so a quiet month is not 744 rows of zeros.
    if !series.is_empty() {
        open_table(
            &mut s,
            t,
            title,
            &[
                t.tr("charts.col_start"),
                t.tr("charts.legend_failures"),
                t.tr("charts.legend_refusals"),
            ],
        );
        for b in series.buckets.iter().filter(|b| b.total() > 0) {
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&stamp(b.start_ms)),
                b.failures,
                b.refusals
            );
        }
        let _ = write!(
            s,
            "</tbody></table><p class=\"hint\">{}</p></details>",
            escape(t.tr("charts.zeros_left_out"))
        );
    }
    s.push_str("</div>");
    Markup(s)
}

/// Longest label drawn beside a bar; the table has the whole text.
const MAX_LABEL_CHARS: usize = 18;

/// Horizontal bars for a top list (`items` in the order given), then its table.
/// `key_heading` names the first column of the table ("Address", "User").
pub fn top_chart(t: Lang, id: &str, title: &str, key_heading: &str, items: &[Tally]) -> Markup {
    let (left, right, top, bottom) = (136.0, 44.0, 8.0, 40.0);
    let row_h = 22.0;
    let rows = items.len().max(1) as f64;
    let height = top + row_h * rows + bottom;
    let plot_w = WIDTH - left - right;
    let base = top + row_h * rows;
    let max = items.iter().map(|i| i.total).max().unwrap_or(0);
    let sc = scale(max);
    let desc = match items.first() {
        None => t.tr("charts.top_empty").to_string(),
        Some(first) => t.tr_with(
            "charts.top_desc",
            &[
                ("n", &items.len()),
                ("key", &first.key),
                ("total", &first.total),
            ],
        ),
    };
    let mut s = String::new();
    open_svg(&mut s, id, height, title, &desc);
    for v in sc.ticks() {
        let x = left + plot_w * v as f64 / sc.top as f64;
        write_x_tick(&mut s, "grid", x, top, base, &v.to_string());
    }
    for (i, item) in items.iter().enumerate() {
        let y = top + row_h * i as f64;
        let w = plot_w * item.total as f64 / sc.top as f64;
        let _ = write!(
            s,
            "<text class=\"label\" x=\"{lx}\" y=\"{ty}\" text-anchor=\"end\">{label}</text>\
             <rect class=\"bar-failures\" x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{h}\"/>\
             <text class=\"value\" x=\"{vx}\" y=\"{ty}\">{total}</text>",
            lx = n(left - 6.0),
            ty = n(y + row_h / 2.0 + 4.0),
            label = escape(&shorten(&item.key, MAX_LABEL_CHARS)),
            x = n(left),
            y = n(y + 3.0),
            w = n(w),
            h = n(row_h - 6.0),
            vx = n(left + w + 4.0),
            total = item.total,
        );
    }
    if items.is_empty() {
        write_empty_note(&mut s, t, left + plot_w / 2.0, top + row_h / 2.0 + 4.0);
    }
    let _ = write!(
        s,
        "<line class=\"axis\" x1=\"{l}\" x2=\"{l}\" y1=\"{t}\" y2=\"{b}\"/>\
         <text class=\"axis-title\" x=\"{x}\" y=\"{y}\" text-anchor=\"middle\">{label}</text></svg>",
        l = n(left),
        t = n(top),
        b = n(base),
        x = n(left + plot_w / 2.0),
        y = n(height - 6.0),
        label = escape(t.tr("charts.axis_failed_attempts")),
    );
    if !items.is_empty() {
        open_table(
            &mut s,
            t,
            title,
            &[key_heading, t.tr("charts.axis_failed_attempts")],
        );
        for item in items {
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td></tr>",
                escape(&item.key),
                item.total
            );
        }
        s.push_str("</tbody></table></details>");
    }
    s.push_str("</div>");
    Markup(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::activity::Plan;

    const T0: i64 = 1_795_341_600_000; // 2026-11-22T10:00:00Z

    fn tally(key: &str, total: i64) -> Tally {
        Tally {
            key: key.to_string(),
            total,
            rows: 1,
            last_ms: T0,
        }
    }

    fn series(plan: Plan, values: &[(usize, i64, i64)]) -> Series {
        let mut buckets: Vec<Bucket> = (0..plan.len)
            .map(|i| Bucket {
                start_ms: plan.bucket_start(i),
                ..Bucket::default()
            })
            .collect();
        for &(i, f, r) in values {
            buckets[i].failures = f;
            buckets[i].refusals = r;
        }
        Series { plan, buckets }
    }

    fn de() -> Lang {
        Lang::by_tag("de").expect("German catalogue")
    }

    #[test]
    fn scales_are_round_and_hold_the_maximum() {
        let cases = [
            (0, 1, 1),
            (1, 1, 1),
            (3, 3, 1),
            (5, 5, 1),
            (6, 6, 2),
            (7, 8, 2),
            (12, 15, 5),
            (100, 100, 20),
            (101, 150, 50),
            (2_345, 2_500, 500),
            (1_000_000, 1_000_000, 200_000),
        ];
        for (max, top, step) in cases {
            assert_eq!(scale(max), Scale { top, step }, "max {max}");
        }
        assert_eq!(scale(7).ticks(), vec![0, 2, 4, 6, 8]);
        for max in 0..5_000 {
            let s = scale(max);
            assert!(
                s.top >= max && s.top / s.step <= 5 && s.top % s.step == 0,
                "{max}: {s:?}"
            );
            let lead = s.step / 10_i64.pow(s.step.ilog10());
            assert!(matches!(lead, 1 | 2 | 5), "{max}: {s:?}");
        }
        assert!(scale(i64::MAX).top >= i64::MAX / 2, "no overflow");
    }

    #[test]
    fn escapes_markup_quotes_and_control_characters() {
        assert_eq!(escape("<script>&\"'"), "&lt;script&gt;&amp;&quot;&#39;");
        assert_eq!(escape("a\nb\u{0}"), "a\u{FFFD}b\u{FFFD}");
        assert_eq!(escape("jörg"), "jörg");
        assert_eq!(shorten("abcdef", 4), "abc…");
        assert_eq!(shorten("abcd", 4), "abcd");
    }

    #[test]
    fn a_hostile_username_is_escaped_in_the_svg_and_the_table() {
        let hostile = "<script>&\"'";
        let m = top_chart(
            Lang::english(),
            "top-users",
            "Top",
            "User",
            &[tally(hostile, 3)],
        );
        let html = m.as_str();
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("&\""), "{html}");
        let escaped = "&lt;script&gt;&amp;&quot;&#39;";
        let (svg, table) = html.split_once("</svg>").expect("svg then table");
        assert!(svg.contains(&format!(">{escaped}</text>")), "{svg}");
        assert!(
            table.contains(&format!("<td>{escaped}</td><td>3</td>")),
            "{table}"
        );
        // The description names the top entry, escaped too.
        assert!(svg.contains(&format!("{escaped} with 3")), "{svg}");
    }

    #[test]
    fn a_long_label_is_cut_in_the_svg_but_whole_in_the_table() {
        let long = "a".repeat(40);
        let m = top_chart(Lang::english(), "x", "Top", "User", &[tally(&long, 1)]);
        let (svg, table) = m.as_str().split_once("</svg>").expect("svg");
        assert!(
            svg.contains(&format!(">{}…</text>", "a".repeat(17))),
            "{svg}"
        );
        assert!(table.contains(&long));
    }

    #[test]
    fn every_chart_is_a_named_image() {
        let plan = Plan::last_minutes(T0, 60);
        let charts = [
            time_chart(
                Lang::english(),
                "c1",
                "Per minute",
                &series(plan, &[(3, 1, 2)]),
            ),
            time_chart(Lang::english(), "c2", "Empty", &series(plan, &[])),
            top_chart(
                Lang::english(),
                "c3",
                "Top",
                "Address",
                &[tally("192.0.2.1", 4)],
            ),
            top_chart(Lang::english(), "c4", "Top", "Address", &[]),
        ];
        for (i, chart) in charts.iter().enumerate() {
            let html = chart.as_str();
            let id = format!("c{}", i + 1);
            assert!(html.contains("role=\"img\""), "{html}");
            assert!(
                html.contains(&format!("aria-labelledby=\"{id}-title {id}-desc\"")),
                "{html}"
            );
            assert!(
                html.contains(&format!("<title id=\"{id}-title\">")),
                "{html}"
            );
            assert!(html.contains(&format!("<desc id=\"{id}-desc\">")), "{html}");
            assert!(html.contains("viewBox=\"0 0 400 ") && html.contains("width=\"100%\""));
            assert!(html.contains("class=\"axis-title\""), "axis labels: {html}");
            // Within the CSP: no inline styles, no script, no style element.
            assert!(!html.contains("style"), "{html}");
            assert!(!html.contains("<script"), "{html}");
        }
    }

    #[test]
    fn time_chart_draws_and_tabulates_the_right_numbers() {
        let plan = Plan::last_minutes(T0 + 30 * MINUTE_MS, 60);
        // Bucket 49 is 10:20 (the plan starts at 09:31).
        let s = series(plan, &[(49, 7, 3), (58, 0, 10)]);
        let html = time_chart(Lang::english(), "m", "Per minute", &s).0;
        assert!(
            html.contains("<tr><td>2026-11-22 10:20</td><td>7</td><td>3</td></tr>"),
            "{html}"
        );
        assert!(
            html.contains("<tr><td>2026-11-22 10:29</td><td>0</td><td>10</td></tr>"),
            "{html}"
        );
        assert_eq!(
            html.matches("<tr><td>").count(),
            2,
            "zero minutes are left out"
        );
        // Scale 0..10 in steps of 2, over a plot of 158 units: 7 failures are 110.6 high.
        for tick in [0, 2, 4, 6, 8, 10] {
            assert!(
                html.contains(&format!("text-anchor=\"end\">{tick}</text>")),
                "{html}"
            );
        }
        assert!(html.contains("height=\"110.6\""), "{html}");
        assert!(html.contains("7 failed and 13 refused"), "{html}");
        // A tie: the earlier minute is named.
        assert!(html.contains("Most at 2026-11-22 10:20: 10"), "{html}");
        // Time labels every 10 minutes, on round UTC times.
        for label in ["09:40", "09:50", "10:00", "10:10", "10:20"] {
            assert!(
                html.contains(&format!(">{label}</text>")),
                "{label}: {html}"
            );
        }
        assert!(!html.contains(">09:31</text>"));
    }

    #[test]
    fn an_empty_chart_says_so() {
        let plan = Plan::hours(T0 - 24 * HOUR_MS, T0, 744);
        let html = time_chart(Lang::english(), "h", "Per hour", &series(plan, &[])).0;
        assert!(html.contains("No failed or refused attempts"), "{html}");
        assert!(!html.contains("<table>"), "no table of zeros");
        assert!(!html.contains("<g><title>"), "no bars");
        let html = top_chart(de(), "t", "Oben", "Adresse", &[]).0;
        assert!(html.contains("Keine fehlgeschlagenen"), "{html}");
    }

    #[test]
    fn hour_labels_switch_to_days_for_long_periods_and_the_cap_is_shown() {
        let day = Plan::hours(T0 - 24 * HOUR_MS, T0, 744);
        let html = time_chart(Lang::english(), "h", "t", &series(day, &[(0, 1, 0)])).0;
        assert!(
            html.contains(">12:00</text>") && html.contains(">16:00</text>"),
            "{html}"
        );
        assert!(!html.contains(">13:00</text>"), "{html}");
        assert!(
            html.contains(">11-22</text>"),
            "midnight is named by its day: {html}"
        );
        assert!(!html.contains(">00:00</text>"), "{html}");
        assert!(!html.contains("The period is longer"));
        let year = Plan::hours(T0 - 365 * 24 * HOUR_MS, T0, 744);
        let html = time_chart(de(), "h", "t", &series(year, &[(743, 1, 0)])).0;
        assert!(html.contains(">11-19</text>"), "weekly day labels: {html}");
        assert!(html.contains("744"), "{html}");
        assert!(html.contains("class=\"hint\""), "the cap is said: {html}");
    }
}
