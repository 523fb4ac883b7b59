//! The admin audit area: only admins (TrueNAS group in `admin.groups`, or `admin.users`) get
//! the page, the downloads and `GET /api/v1/audit`; everyone else gets 403, and every view is
//! itself audited.

// Test code: a failed unwrap, expect or panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use axum::body::Body;
use http::header::{LOCATION, SET_COOKIE};
use http::Request;
use serde_json::Value;
use support::clock::now_ms;
use support::fake_truenas::{FakeTrueNas, FakeUser, Flavour};
use support::portal::{self, body_json, body_text, Portal};

async fn setup() -> (FakeTrueNas, Portal) {
    let mut ada = FakeUser::new("ada", "ada-password");
    ada.groups = vec!["builtin_administrators".into()];
    let fake = FakeTrueNas::start(
        Flavour::V26,
        vec![
            ada,
            FakeUser::new("bob", "bob-password"),
            FakeUser::new("carl", "carl-password"),
            FakeUser::new("<b>x</b>", "<b>x</b>-password"),
        ],
    )
    .await;
    let portal = portal::start(
        &fake,
        "jsonrpc",
        r#"["truenas"]"#,
        &[("PASSGATE_ADMIN__USERS", r#"["carl"]"#)],
    )
    .await;
    (fake, portal)
}

async fn token(portal: &Portal, user: &str) -> String {
    let (status, body) = portal.login(user, &format!("{user}-password")).await;
    assert_eq!(status, 200, "{body}");
    body["token"].as_str().expect("token").to_string()
}

/// Signs in through the pages and returns the Cookie header value.
async fn cookie_session(portal: &Portal, user: &str) -> String {
    let page = portal
        .send(Request::get("/login").body(Body::empty()).expect("request"))
        .await;
    let csrf_cookie = page.headers()[SET_COOKIE]
        .to_str()
        .expect("ascii")
        .split(';')
        .next()
        .expect("pair")
        .to_string();
    let html = body_text(page).await;
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).expect("csrf") + marker.len();
    let token = html[start..].split('"').next().expect("value");
    let response = portal
        .send(
            Request::post("/login")
                .header("content-type", "application/x-www-form-urlencoded")
                .header("cookie", &csrf_cookie)
                .body(Body::from(format!(
                    "csrf={token}&username={user}&password={user}-password"
                )))
                .expect("request"),
        )
        .await;
    assert_eq!(response.status(), 303);
    let session = response.headers()[SET_COOKIE]
        .to_str()
        .expect("ascii")
        .split(';')
        .next()
        .expect("pair")
        .to_string();
    format!("{csrf_cookie}; {session}")
}

fn get(path: &str, cookie: &str) -> Request<Body> {
    Request::get(path)
        .header("cookie", cookie)
        .body(Body::empty())
        .expect("request")
}

async fn api(portal: &Portal, path: &str, token: &str) -> (u16, Value) {
    portal.get_json(path, token).await
}

#[tokio::test]
async fn non_admins_get_403_from_the_page_and_the_api() {
    let (_fake, portal) = setup().await;
    let bob = token(&portal, "bob").await;
    let (status, body) = api(&portal, "/api/v1/audit", &bob).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    let cookie = cookie_session(&portal, "bob").await;
    assert_eq!(
        portal.send(get("/admin/audit", &cookie)).await.status(),
        403
    );
    assert_eq!(
        portal
            .send(get("/admin/audit/export?format=csv", &cookie))
            .await
            .status(),
        403
    );
    // Not signed in at all.
    let (status, _) = api(&portal, "/api/v1/audit", "not-a-token").await;
    assert_eq!(status, 401);
    let response = portal.send(get("/admin/audit", "")).await;
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()[LOCATION], "/login");
}

#[tokio::test]
async fn admins_page_through_events_and_download_them() {
    let (_fake, portal) = setup().await;
    // Some history: sign-ins (durable rows), one with a hostile username.
    let _ = token(&portal, "bob").await;
    let _ = token(&portal, "<b>x</b>").await;
    let ada = token(&portal, "ada").await;

    let (status, body) = api(&portal, "/api/v1/audit?event=login_succeeded&limit=1", &ada).await;
    assert_eq!(status, 200, "{body}");
    let first = &body["events"][0];
    assert_eq!(first["event"], "login_succeeded");
    for field in [
        "id",
        "time",
        "count",
        "outcome",
        "username",
        "client_ip",
        "request_id",
        "detail",
    ] {
        assert!(first.get(field).is_some(), "missing {field}: {first}");
    }
    let cursor = body["next_cursor"].as_i64().expect("more pages");
    let (_, older) = api(
        &portal,
        &format!("/api/v1/audit?event=login_succeeded&limit=1&cursor={cursor}"),
        &ada,
    )
    .await;
    assert!(older["events"][0]["id"].as_i64().expect("id") < first["id"].as_i64().expect("id"));
    let (status, _) = api(&portal, "/api/v1/audit?outcome=maybe", &ada).await;
    assert_eq!(status, 400);

    // carl is an admin through admin.users.
    let carl = token(&portal, "carl").await;
    assert_eq!(api(&portal, "/api/v1/audit", &carl).await.0, 200);

    let cookie = cookie_session(&portal, "ada").await;
    let page = portal
        .send(get("/admin/audit?event=login_succeeded", &cookie))
        .await;
    assert_eq!(page.status(), 200);
    let html = body_text(page).await;
    assert!(
        html.contains("login_succeeded") && html.contains("bob"),
        "{html}"
    );
    let all = body_text(portal.send(get("/admin/audit", &cookie)).await).await;
    assert!(!all.contains("<b>x</b>"), "usernames are escaped");
    assert!(
        all.contains("&#60;b&#62;x&#60;/b&#62;"),
        "the hostile username is shown escaped"
    );

    let csv = portal
        .send(get("/admin/audit/export?format=csv", &cookie))
        .await;
    assert_eq!(csv.status(), 200);
    assert!(csv.headers()["content-disposition"]
        .to_str()
        .expect("ascii")
        .contains("attachment"));
    let csv = body_text(csv).await;
    assert!(csv.starts_with("id,time,last_time,count,event"), "{csv}");
    let json = body_text(
        portal
            .send(get("/admin/audit/export?format=json", &cookie))
            .await,
    )
    .await;
    for line in json.lines() {
        let _: Value = serde_json::from_str(line).expect("one JSON object per line");
    }

    // The views and the downloads are themselves audited (written by the store's writer).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, body) = api(&portal, "/api/v1/audit?event=admin_exported_audit", &ada).await;
        if body["events"].as_array().is_some_and(|e| e.len() >= 2) {
            assert_eq!(body["events"][0]["username"], "ada");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "exports were not audited: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, viewed) = api(&portal, "/api/v1/audit?event=admin_viewed_audit", &ada).await;
    assert!(!viewed["events"].as_array().expect("list").is_empty());
    let _ = body_json; // keep the helper import used in every build of this file
}

/// The part of the page holding one chart: its SVG and its table.
fn chart<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no chart {id}:\n{html}"));
    let start = html[..start]
        .rfind("<div class=\"chart\">")
        .expect("the chart's start");
    let rest = &html[start..];
    &rest[..rest.find("</div>").expect("the chart's end")]
}

fn desc(chart: &str) -> &str {
    let start = chart.find("<desc id=").expect("a description");
    let rest = &chart[start..];
    &rest[rest.find('>').expect("tag end") + 1..rest.find("</desc>").expect("desc end")]
}

/// The rows of a chart's table, as cells.
fn table_rows(chart: &str) -> Vec<Vec<String>> {
    let Some((_, table)) = chart.split_once("<tbody>") else {
        return Vec::new();
    };
    let body = table.split("</tbody>").next().unwrap_or_default();
    body.split("<tr>")
        .filter(|r| !r.is_empty())
        .map(|r| {
            r.trim_end_matches("</tr>")
                .split("</td>")
                .filter_map(|c| c.strip_prefix("<td>"))
                .map(str::to_string)
                .collect()
        })
        .collect()
}

/// (failures, refusals) summed over a time chart's table.
fn table_sums(chart: &str) -> (i64, i64) {
    table_rows(chart).iter().fold((0, 0), |(f, r), row| {
        let n = |i: usize| row[i].parse::<i64>().expect("a count");
        (f + n(1), r + n(2))
    })
}

/// A row the store's writer is still counting, put straight into `audit_open`.
async fn insert_open(
    pool: &sqlx::SqlitePool,
    slot: i64,
    event: &str,
    count: i64,
    user: &str,
    ip: &str,
) {
    let now = now_ms();
    sqlx::query(
        "INSERT INTO audit_open (writer, slot, updated_ms, ts_ms, last_ts_ms, count, event, \
         outcome, username, client_ip, detail) \
         VALUES ('test-writer', ?1, ?2, ?2, ?2, ?3, ?4, 'failure', ?5, ?6, '{}')",
    )
    .bind(slot)
    .bind(now)
    .bind(count)
    .bind(event)
    .bind(user)
    .bind(ip)
    .execute(pool)
    .await
    .expect("insert an open row");
}

const HOSTILE: &str = "<script>&\"'";
const HOSTILE_ESCAPED: &str = "&lt;script&gt;&amp;&quot;&#39;";

#[tokio::test]
async fn the_charts_count_failures_refusals_and_rows_still_open() {
    let (_fake, portal) = setup().await;
    let cookie = cookie_session(&portal, "ada").await;
    // Rows the writer is still counting this minute: they must show now.
    let pool = passgate::db::open(&portal.dir.path().join("data/passgate.db"))
        .await
        .expect("db");
    insert_open(&pool, 1, "rate_limited", 5, "dora", "198.51.100.7").await;
    insert_open(&pool, 2, "login_failed", 2, "mallory", "203.0.113.9").await;

    let html = body_text(portal.send(get("/admin/audit", &cookie)).await).await;
    let last_hour = chart(&html, "chart-last-hour");
    assert!(last_hour.contains("role=\"img\""), "{last_hour}");
    assert!(
        desc(last_hour).contains("2 failed and 5 refused attempts"),
        "{last_hour}"
    );
    assert_eq!(table_sums(last_hour), (2, 5), "{last_hour}");
    let period = chart(&html, "chart-period");
    assert!(
        desc(period).contains("2 failed and 5 refused attempts"),
        "{period}"
    );
    assert_eq!(table_sums(period), (2, 5), "{period}");
    // The event list shows them too, marked as still counting.
    assert_eq!(html.matches("(still counting)").count(), 2, "{html}");

    // Failures through the real app: three wrong passwords for bob, one for a hostile name.
    for user in ["bob", "bob", "bob", HOSTILE] {
        let (status, body) = portal.login(user, "not-the-password").await;
        assert_eq!(status, 401, "{body}");
    }
    // Group commit puts them on disk within a fraction of a second; generous for a busy box.
    let deadline = Instant::now() + Duration::from_secs(10);
    let html = loop {
        let html = body_text(portal.send(get("/admin/audit", &cookie)).await).await;
        let users = table_rows(chart(&html, "chart-top-users"));
        let seen = table_sums(chart(&html, "chart-last-hour")) == (6, 5)
            && users.contains(&vec![HOSTILE_ESCAPED.to_string(), "1".to_string()]);
        if seen {
            break html;
        }
        assert!(
            Instant::now() < deadline,
            "the failures never reached the charts:\n{html}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let last_hour = chart(&html, "chart-last-hour");
    assert!(
        desc(last_hour).contains("6 failed and 5 refused attempts"),
        "{last_hour}"
    );
    // Every listed minute is one of the last 60, and the bars carry the same numbers.
    let first =
        time::OffsetDateTime::from_unix_timestamp(now_ms() / 1000 - 61 * 60).expect("a time");
    let first = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}",
        first.year(),
        u8::from(first.month()),
        first.day(),
        first.hour(),
        first.minute()
    );
    for row in table_rows(last_hour) {
        assert!(
            row[0] >= first,
            "{row:?} is older than the last hour ({first})"
        );
    }
    assert!(last_hour.matches("<g><title>").count() >= 1, "bars drawn");
    let period = chart(&html, "chart-period");
    assert_eq!(table_sums(period), (6, 5), "{period}");

    let ips = table_rows(chart(&html, "chart-top-ips"));
    assert!(
        ips.contains(&vec!["127.0.0.1".to_string(), "4".to_string()]),
        "{ips:?}"
    );
    let users_chart = chart(&html, "chart-top-users");
    let users = table_rows(users_chart);
    assert!(
        users.contains(&vec!["bob".to_string(), "3".to_string()]),
        "{users:?}"
    );
    // The hostile name: escaped in the SVG label and in the table, raw nowhere.
    let (svg, _) = users_chart.split_once("</svg>").expect("svg");
    assert!(svg.contains(&format!(">{HOSTILE_ESCAPED}</text>")), "{svg}");
    assert!(
        !html.contains(HOSTILE),
        "the raw name is nowhere on the page"
    );
    assert!(!html.contains("<script>"), "no injected script element");
}
