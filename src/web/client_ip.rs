//! The client address, resolved once per request and stored as an extension for every later
//! layer (`ClientIp`), next to the TCP peer it came from (`PeerIp`).
//!
//! # The rule
//!
//! 1. The TCP peer is normalised (`::ffff:a.b.c.d` becomes `a.b.c.d`).
//! 2. If no trusted proxy is configured, or the peer is not one of them, the client **is the
//!    peer**: forwarding headers are ignored completely.
//! 3. Otherwise exactly one header is read, never both:
//!    `X-Forwarded-For` if the request carries at least one `X-Forwarded-For` line (even an
//!    empty or malformed one), else `Forwarded` (RFC 7239, its `for=` parameter), else the
//!    client is the peer. A broken `X-Forwarded-For` never falls through to `Forwarded`.
//!    (Consequence for operators: a proxy that emits only `Forwarded` must also drop any
//!    client-sent `X-Forwarded-For`, or that header wins. nginx's `$proxy_add_x_forwarded_for`,
//!    HAProxy's `option forwardfor`, Caddy and Traefik all write `X-Forwarded-For`.)
//! 4. All lines of the chosen header form one comma-separated list, in order. It is walked
//!    from the **right**: trusted addresses are skipped (they are our proxies); the first
//!    untrusted address is the client. If every entry is trusted, the left-most entry is the
//!    client; if the list has no entries, the peer is.
//!
//! # Garbage and size: fail safe, and only on what we read
//!
//! The right part of the list was written by our own proxies; everything left of the client
//! entry was written by the client and is never even looked at. So:
//!
//! * An entry that does not parse as an address (`unknown`, `_hidden`, a `Forwarded` element
//!   without exactly one `for=`, junk bytes, zone ids, …) met *during the walk* means the
//!   proxy chain is broken: the result is the peer, i.e. the proxy, which is then
//!   rate-limited as one client. Requests never fail because of these headers.
//! * The walk reads at most [`MAX_WALK_ENTRIES`] entries and [`MAX_WALK_BYTES`] bytes from the
//!   right; needing more also falls back to the peer. These limits deliberately do not apply
//!   to the whole header: a client could otherwise prepend 5 KiB of junk to be counted as the
//!   proxy itself, sharing (and exhausting) the rate-limit bucket of every user behind it.
//!   The work per request is bounded by the walk alone; nothing is allocated.
//! * Elements are split on every `,` without regard to quoting: a quote opened by the client
//!   on the left can then never swallow the entries our proxies appended on the right. Within
//!   one `Forwarded` element, quoted strings are parsed properly.
//!
//! Accepted entries: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]`,
//! `[2001:db8::1]:443`, with optional surrounding whitespace; in `Forwarded`, `for=` (any
//! case) with a token or quoted-string value, mixed with other parameters
//! (`for=192.0.2.60;proto=https;by=203.0.113.43`, `for="[2001:db8:cafe::17]:4711"`), where an
//! obfuscated port (`:_abc`) is tolerated but an obfuscated or `unknown` node is not.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::HeaderMap;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// Most entries a right-to-left walk reads before giving up and using the peer.
pub const MAX_WALK_ENTRIES: usize = 32;
/// Most header bytes (entries and separators) a right-to-left walk reads before giving up and
/// using the peer.
pub const MAX_WALK_BYTES: usize = 4096;

const X_FORWARDED_FOR: &str = "x-forwarded-for";
const FORWARDED: &str = "forwarded";

/// The client address every later layer uses (rate limits, audit, fail2ban lines).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// The (normalised) TCP peer of the request: the reverse proxy when there is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerIp(pub IpAddr);

/// The reverse proxies whose forwarding headers are believed, parsed once from config
/// `proxy.trusted`. Cheap to clone (the middleware state is cloned per request).
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies {
    v4: Arc<[Ipv4Net]>,
    v6: Arc<[Ipv6Net]>,
}

impl TrustedProxies {
    /// IPv4-mapped IPv6 networks (`::ffff:10.0.0.0/104`) are stored as the IPv4 networks they
    /// denote, so that they match normalised addresses.
    pub fn new(nets: Vec<IpNet>) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for net in nets {
            match net {
                IpNet::V4(n) => v4.push(n.trunc()),
                IpNet::V6(n) => match mapped_v4_net(n) {
                    Some(n4) => v4.push(n4),
                    None => v6.push(n.trunc()),
                },
            }
        }
        Self {
            v4: v4.into(),
            v6: v6.into(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// Whether `ip` (normalised first) lies in a trusted network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match normalise(ip) {
            IpAddr::V4(a) => self.v4.iter().any(|n| n.contains(&a)),
            IpAddr::V6(a) => self.v6.iter().any(|n| n.contains(&a)),
        }
    }
}

/// `::ffff:a.b.c.d/n` with n ≥ 96 is the IPv4 network `a.b.c.d/(n-96)`.
fn mapped_v4_net(net: Ipv6Net) -> Option<Ipv4Net> {
    let prefix = net.prefix_len().checked_sub(96)?;
    let addr = net.network().to_ipv4_mapped()?;
    Ipv4Net::new(addr, prefix).ok().map(|n| n.trunc())
}

/// `::ffff:1.2.3.4` is the IPv4 client 1.2.3.4 on a dual-stack socket.
pub fn normalise(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// The pure decision (see the module documentation for the rule). `peer` is the TCP peer;
/// `x_forwarded_for` and `forwarded` are the raw values of every occurrence of those headers,
/// in order. Never panics; the result is always normalised.
pub fn resolve_client_ip(
    peer: IpAddr,
    trusted: &TrustedProxies,
    x_forwarded_for: &[&[u8]],
    forwarded: &[&[u8]],
) -> IpAddr {
    resolve_lines(
        peer,
        trusted,
        x_forwarded_for.iter().copied(),
        forwarded.iter().copied(),
    )
}

/// [`resolve_client_ip`] straight from a header map, without collecting the lines.
pub fn resolve_from_headers(peer: IpAddr, trusted: &TrustedProxies, headers: &HeaderMap) -> IpAddr {
    resolve_lines(
        peer,
        trusted,
        headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .map(|v| v.as_bytes()),
        headers.get_all(FORWARDED).iter().map(|v| v.as_bytes()),
    )
}

fn resolve_lines<'a, X, F>(peer: IpAddr, trusted: &TrustedProxies, xff: X, forwarded: F) -> IpAddr
where
    X: DoubleEndedIterator<Item = &'a [u8]>,
    F: DoubleEndedIterator<Item = &'a [u8]>,
{
    let peer = normalise(peer);
    if trusted.is_empty() || !trusted.contains(peer) {
        return peer;
    }
    let mut xff = xff.peekable();
    if xff.peek().is_some() {
        return walk(peer, trusted, xff, parse_xff_entry);
    }
    let mut forwarded = forwarded.peekable();
    if forwarded.peek().is_some() {
        return walk(peer, trusted, forwarded, parse_forwarded_element);
    }
    peer
}

/// The right-to-left walk over the comma-joined lines, bounded by [`MAX_WALK_ENTRIES`] and
/// [`MAX_WALK_BYTES`]. Bytes left of the client entry are never read.
fn walk<'a, I>(
    peer: IpAddr,
    trusted: &TrustedProxies,
    lines: I,
    parse: fn(&[u8]) -> Option<IpAddr>,
) -> IpAddr
where
    I: DoubleEndedIterator<Item = &'a [u8]>,
{
    let mut entries = 0usize;
    let mut budget = MAX_WALK_BYTES;
    let mut leftmost = None;
    for line in lines.rev() {
        let mut end = line.len();
        loop {
            // Look for the separator before the last remaining entry, within the budget only.
            let window_start = end.saturating_sub(budget);
            let Some(window) = line.get(window_start..end) else {
                return peer;
            };
            let (entry, next_end) = match window.iter().rposition(|&b| b == b',') {
                Some(p) => (&window[p + 1..], Some(window_start + p)),
                None if window_start == 0 => (window, None),
                None => return peer, // the entry is longer than what is left of the budget
            };
            budget = budget.saturating_sub(entry.len() + usize::from(next_end.is_some()));
            entries += 1;
            if entries > MAX_WALK_ENTRIES {
                return peer;
            }
            let entry = trim_ows(entry);
            // Empty list elements carry nothing (RFC 9110 §5.6.1 says to ignore them).
            if !entry.is_empty() {
                let Some(ip) = parse(entry) else {
                    return peer; // our own proxies wrote garbage: the chain is broken
                };
                let ip = normalise(ip);
                if !trusted.contains(ip) {
                    return ip;
                }
                leftmost = Some(ip);
            }
            match next_end {
                Some(e) => end = e,
                None => break,
            }
        }
    }
    leftmost.unwrap_or(peer)
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// One `X-Forwarded-For` entry (already trimmed): an address with an optional numeric port.
fn parse_xff_entry(entry: &[u8]) -> Option<IpAddr> {
    parse_node(entry, false)
}

/// `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:80`. With
/// `obfuscated_port`, a port may also be an RFC 7239 obfport (`_abc`).
fn parse_node(node: &[u8], obfuscated_port: bool) -> Option<IpAddr> {
    let text = std::str::from_utf8(node).ok()?;
    if let Some(rest) = text.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        let v6: Ipv6Addr = inside.parse().ok()?;
        if !after.is_empty() {
            valid_port(after.strip_prefix(':')?, obfuscated_port).then_some(())?;
        }
        return Some(IpAddr::V6(v6));
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    let (host, port) = text.split_once(':')?;
    let v4: Ipv4Addr = host.parse().ok()?;
    valid_port(port, obfuscated_port).then_some(IpAddr::V4(v4))
}

fn valid_port(port: &str, obfuscated_allowed: bool) -> bool {
    if let Some(obf) = port.strip_prefix('_') {
        return obfuscated_allowed
            && !obf.is_empty()
            && obf
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    }
    !port.is_empty()
        && port.len() <= 5
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u16>().is_ok()
}

/// RFC 7230 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// One `Forwarded` element (already trimmed, no commas): `pair *( ";" [pair] )`, where
/// `pair = token "=" ( token / quoted-string )`. The element's address is its single `for=`.
fn parse_forwarded_element(element: &[u8]) -> Option<IpAddr> {
    let mut rest = element;
    let mut for_value: Option<&[u8]> = None;
    loop {
        rest = trim_ows(rest);
        if rest.is_empty() {
            break;
        }
        if let [b';', tail @ ..] = rest {
            rest = tail; // an empty pair
            continue;
        }
        let eq = rest.iter().position(|&b| b == b'=')?;
        let name = trim_ows(&rest[..eq]);
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return None;
        }
        let after = trim_ows(&rest[eq + 1..]);
        let (value, tail) = if let [b'"', quoted @ ..] = after {
            let (value, escaped, tail) = split_quoted(quoted)?;
            // Addresses never need escapes: a quoted-pair in `for` is not an address.
            (if escaped { None } else { Some(value) }, tail)
        } else {
            let stop = after.iter().position(|&b| b == b';').unwrap_or(after.len());
            let value = trim_ows(&after[..stop]);
            if value.is_empty() || value.contains(&b'"') {
                return None;
            }
            (Some(value), &after[stop..])
        };
        if name.eq_ignore_ascii_case(b"for") {
            if for_value.is_some() {
                return None; // RFC 7239 §4: a parameter occurs at most once per element
            }
            for_value = Some(value?);
        }
        let tail = trim_ows(tail);
        rest = match tail {
            [] => tail,
            [b';', next @ ..] => next,
            _ => return None,
        };
    }
    parse_node(for_value?, true)
}

/// The rest of a quoted-string after its opening quote: (contents, had a quoted-pair, rest
/// after the closing quote). `None` if unterminated.
fn split_quoted(s: &[u8]) -> Option<(&[u8], bool, &[u8])> {
    let mut escaped = false;
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'\\' => {
                escaped = true;
                i += 2;
            }
            b'"' => return Some((&s[..i], escaped, &s[i + 1..])),
            _ => i += 1,
        }
    }
    None
}

/// The TCP peer from `ConnectInfo`, normalised; `::` when the server did not provide one.
fn peer_of(request: &Request) -> IpAddr {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| normalise(addr.ip()))
        .unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED))
}

/// Middleware: resolves the client once and stores `ClientIp` and `PeerIp` as extensions.
/// Use with `axum::middleware::from_fn_with_state(trusted, resolve)`.
pub async fn resolve(
    State(trusted): State<TrustedProxies>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = peer_of(&request);
    let client = resolve_from_headers(peer, &trusted, request.headers());
    request.extensions_mut().insert(PeerIp(peer));
    request.extensions_mut().insert(ClientIp(client));
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn nets(list: &[&str]) -> TrustedProxies {
        TrustedProxies::new(list.iter().map(|s| s.parse().expect("test CIDR")).collect())
    }

    fn xff(peer: &str, trusted: &TrustedProxies, lines: &[&str]) -> IpAddr {
        let lines: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
        resolve_client_ip(ip(peer), trusted, &lines, &[])
    }

    fn fwd(peer: &str, trusted: &TrustedProxies, lines: &[&str]) -> IpAddr {
        let lines: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
        resolve_client_ip(ip(peer), trusted, &[], &lines)
    }

    fn lan() -> TrustedProxies {
        nets(&["127.0.0.1/32", "10.0.0.0/8", "fd00::/8"])
    }

    /// A header as nginx on 127.0.0.1 passes it on, with the LAN trusted.
    type Header = fn(&str, &TrustedProxies, &[&str]) -> IpAddr;

    /// Each case's header lines, sent through the local proxy, resolve to its client.
    fn assert_clients(header: Header, cases: &[(&[&str], &str)]) {
        let t = lan();
        for (lines, client) in cases {
            assert_eq!(header("127.0.0.1", &t, lines), ip(client), "{lines:?}");
        }
    }

    /// One header's lines as bytes off the wire.
    type RawLines<'a> = &'a [&'a [u8]];

    /// As [`assert_clients`], for raw header lines: `(X-Forwarded-For, Forwarded, client)`.
    fn assert_raw_clients(cases: &[(RawLines<'_>, RawLines<'_>, &str)]) {
        let t = lan();
        for (x, f, client) in cases {
            assert_eq!(
                resolve_client_ip(ip("127.0.0.1"), &t, x, f),
                ip(client),
                "{x:?} {f:?}"
            );
        }
    }

    #[test]
    fn nginx_appends_the_real_address_to_a_spoofed_header() {
        // Client 203.0.113.7 sends `X-Forwarded-For: 6.6.6.6`; nginx appends its peer.
        assert_clients(
            xff,
            &[
                (&["6.6.6.6, 203.0.113.7"], "203.0.113.7"),
                (&["6.6.6.6, 10.0.0.1, 1.1.1.1, 203.0.113.7"], "203.0.113.7"),
                // No client header: just the appended address.
                (&["203.0.113.7"], "203.0.113.7"),
            ],
        );
    }

    #[test]
    fn chains_of_trusted_proxies_are_skipped() {
        assert_eq!(
            xff(
                "127.0.0.1",
                &lan(),
                &["6.6.6.6, 198.51.100.9, 10.1.2.3, 10.0.0.5"]
            ),
            ip("198.51.100.9")
        );
        assert_eq!(
            xff("10.0.0.1", &lan(), &["2001:db8::7, fd00::1, 10.9.9.9"]),
            ip("2001:db8::7")
        );
    }

    #[test]
    fn all_trusted_yields_the_left_most_entry() {
        assert_clients(
            xff,
            &[
                (&["10.0.0.7, 10.0.0.2"], "10.0.0.7"),
                (&["10.0.0.7"], "10.0.0.7"),
            ],
        );
    }

    #[test]
    fn empty_list_yields_the_peer() {
        assert_clients(
            xff,
            &[
                (&[""], "127.0.0.1"),
                (&[" , ,, "], "127.0.0.1"),
                (&[], "127.0.0.1"),
            ],
        );
    }

    #[test]
    fn empty_elements_are_ignored() {
        assert_eq!(
            xff("127.0.0.1", &lan(), &["203.0.113.7,, 10.0.0.1,"]),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn untrusted_peer_ignores_forged_headers() {
        let t = lan();
        assert_eq!(xff("198.51.100.1", &t, &["10.0.0.1"]), ip("198.51.100.1"));
        assert_eq!(xff("198.51.100.1", &t, &["6.6.6.6"]), ip("198.51.100.1"));
        assert_eq!(
            fwd("198.51.100.1", &t, &["for=6.6.6.6"]),
            ip("198.51.100.1")
        );
    }

    #[test]
    fn empty_trusted_list_ignores_headers() {
        let none = TrustedProxies::default();
        assert!(none.is_empty());
        assert_eq!(xff("127.0.0.1", &none, &["6.6.6.6"]), ip("127.0.0.1"));
        assert_eq!(fwd("127.0.0.1", &none, &["for=6.6.6.6"]), ip("127.0.0.1"));
        let none = TrustedProxies::new(Vec::new());
        assert!(none.is_empty());
        assert_eq!(xff("10.0.0.1", &none, &["6.6.6.6"]), ip("10.0.0.1"));
    }

    #[test]
    fn garbage_in_the_walked_part_falls_back_to_the_peer() {
        let t = lan();
        for bad in [
            "garbage",
            "unknown",
            "_hidden",
            "1.2.3",
            "1.2.3.4.5",
            "1.2.3.4:",
            "1.2.3.4:99999",
            "1.2.3.4:_p",
            "1.2.3.4:80:80",
            "[1.2.3.4]",
            "[2001:db8::1",
            "[2001:db8::1]x",
            "[2001:db8::1]:",
            "fe80::1%eth0",
            "\"1.2.3.4\"",
            "1.2.3.4 5.6.7.8",
            "\u{fb01}",
        ] {
            assert_eq!(
                xff("127.0.0.1", &t, &[&format!("6.6.6.6, {bad}")]),
                ip("127.0.0.1"),
                "{bad:?}"
            );
            assert_eq!(
                xff("127.0.0.1", &t, &[&format!("{bad}, 10.0.0.2")]),
                ip("127.0.0.1"),
                "{bad:?}"
            );
        }
        assert_raw_clients(&[(&[b"6.6.6.6, \xff\xfe"], &[], "127.0.0.1")]);
    }

    #[test]
    fn garbage_left_of_the_client_is_never_read() {
        assert_clients(
            xff,
            &[(&["\"unterminated, ;;=, 203.0.113.7"], "203.0.113.7")],
        );
        assert_raw_clients(&[(
            &[b"\xff\x00\"[[, 203.0.113.7, 10.0.0.1"],
            &[],
            "203.0.113.7",
        )]);
    }

    #[test]
    fn ports_brackets_and_whitespace() {
        assert_clients(
            xff,
            &[
                (&["1.2.3.4:5678"], "1.2.3.4"),
                (&["2001:db8::1"], "2001:db8::1"),
                (&["[2001:db8::1]"], "2001:db8::1"),
                (&["[2001:db8::1]:443"], "2001:db8::1"),
                (&[" \t 1.2.3.4 \t"], "1.2.3.4"),
                (&["1.2.3.4:80 , [fd00::2]:8443 ,10.0.0.3:1"], "1.2.3.4"),
            ],
        );
    }

    #[test]
    fn forwarded_syntax() {
        assert_clients(
            fwd,
            &[
                (&["for=192.0.2.60"], "192.0.2.60"),
                (&["for=\"[2001:db8:cafe::17]:4711\""], "2001:db8:cafe::17"),
                (&["For=192.0.2.60"], "192.0.2.60"),
                (&["FOR = 192.0.2.60 "], "192.0.2.60"),
                (&["for=192.0.2.60;proto=http;by=203.0.113.43"], "192.0.2.60"),
                (
                    &["proto=https;host=\"a;b=c\";for=\"192.0.2.60:80\";by=_x"],
                    "192.0.2.60",
                ),
                (&["for=\"[2001:db8::1]:_obf\""], "2001:db8::1"),
                (&["for=192.0.2.60;;proto=https;"], "192.0.2.60"),
                // Spoofed left part, then two of our proxies.
                (
                    &["for=6.6.6.6, for=192.0.2.60;proto=https, for=10.0.0.2;by=10.0.0.1"],
                    "192.0.2.60",
                ),
                // A quote opened on the left cannot swallow the right part.
                (&["for=\"6.6.6.6, for=192.0.2.60"], "192.0.2.60"),
            ],
        );
    }

    #[test]
    fn forwarded_garbage_falls_back_to_the_peer() {
        let t = lan();
        for bad in [
            "for=unknown",
            "for=_hidden",
            "for=\"_hidden:80\"",
            "proto=https",
            "for=1.2.3.4;for=5.6.7.8",
            "for=",
            "for=\"1.2.3.4",
            "for=\"1.2.3.\\4\"",
            "for=\"1.2.3.4\"x",
            "for=1.2.3.4\"",
            "=1.2.3.4",
            "f r=1.2.3.4",
            "1.2.3.4",
            "for=1.2.3.4 proto=http",
        ] {
            assert_eq!(fwd("127.0.0.1", &t, &[bad]), ip("127.0.0.1"), "{bad:?}");
            assert_eq!(
                fwd("127.0.0.1", &t, &[&format!("{bad}, for=10.0.0.9")]),
                ip("127.0.0.1"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn x_forwarded_for_wins_and_is_never_combined_with_forwarded() {
        let f: RawLines<'_> = &[b"for=192.0.2.60"];
        assert_raw_clients(&[
            (&[b"203.0.113.7"], f, "203.0.113.7"),
            // A broken X-Forwarded-For does not fall through to Forwarded.
            (&[b"garbage"], f, "127.0.0.1"),
            (&[b""], f, "127.0.0.1"),
            // All-trusted X-Forwarded-For does not continue into Forwarded.
            (&[b"10.0.0.4"], f, "10.0.0.4"),
        ]);
    }

    #[test]
    fn multiple_header_lines_are_one_list_in_order() {
        // HAProxy-style: the client's line first, the proxy's own line appended.
        assert_clients(
            xff,
            &[
                (&["6.6.6.6", "203.0.113.7"], "203.0.113.7"),
                (&["6.6.6.6, 203.0.113.7", "10.0.0.2", ""], "203.0.113.7"),
                (&["203.0.113.7,", "10.0.0.2"], "203.0.113.7"),
                (&["10.0.0.8", "10.0.0.2"], "10.0.0.8"),
            ],
        );
        assert_clients(
            fwd,
            &[(
                &["for=6.6.6.6", "for=192.0.2.60", "for=10.0.0.1"],
                "192.0.2.60",
            )],
        );
    }

    #[test]
    fn oversized_walks_fall_back_to_the_peer() {
        let t = lan();
        // More than MAX_WALK_ENTRIES trusted hops to walk.
        let hops = vec!["10.0.0.1"; MAX_WALK_ENTRIES + 1].join(", ");
        assert_eq!(
            xff("127.0.0.1", &t, &[&format!("203.0.113.7, {hops}")]),
            ip("127.0.0.1")
        );
        let hops = vec!["10.0.0.1"; MAX_WALK_ENTRIES - 1].join(", ");
        assert_eq!(
            xff("127.0.0.1", &t, &[&format!("203.0.113.7, {hops}")]),
            ip("203.0.113.7")
        );
        // Many lines count as many entries.
        let lines = vec!["10.0.0.1"; MAX_WALK_ENTRIES + 1];
        assert_eq!(xff("127.0.0.1", &t, &lines), ip("127.0.0.1"));
        // One huge entry in the walked part.
        let huge = format!("6.6.6.6, {}1.2.3.4", " ".repeat(MAX_WALK_BYTES));
        assert_eq!(xff("127.0.0.1", &t, &[&huge]), ip("127.0.0.1"));
        let huge = format!("for=\"1.2.3.4\";x=\"{}\"", "a".repeat(MAX_WALK_BYTES));
        assert_eq!(fwd("127.0.0.1", &t, &[&huge]), ip("127.0.0.1"));
    }

    #[test]
    fn oversized_client_prefix_does_not_matter() {
        // The client cannot make itself count as the proxy by sending a huge header.
        let t = lan();
        let prefix = vec!["6.6.6.6"; 2000].join(", ");
        assert!(prefix.len() > 4 * MAX_WALK_BYTES);
        assert_eq!(
            xff(
                "127.0.0.1",
                &t,
                &[&format!("{prefix}, 203.0.113.7, 10.0.0.1")]
            ),
            ip("203.0.113.7")
        );
        let junk = "x".repeat(64 * 1024);
        assert_eq!(
            xff("127.0.0.1", &t, &[&junk, "203.0.113.7"]),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn ipv4_mapped_addresses_are_normalised_everywhere() {
        let t = lan();
        // Peer on a dual-stack socket.
        assert_eq!(
            xff("::ffff:127.0.0.1", &t, &["203.0.113.7"]),
            ip("203.0.113.7")
        );
        assert_eq!(
            xff("::ffff:198.51.100.1", &t, &["203.0.113.7"]),
            ip("198.51.100.1")
        );
        assert_eq!(
            xff("::ffff:127.0.0.1", &TrustedProxies::default(), &["1.1.1.1"]),
            ip("127.0.0.1")
        );
        // Header entries.
        assert_eq!(
            xff("127.0.0.1", &t, &["::ffff:203.0.113.7"]),
            ip("203.0.113.7")
        );
        assert_eq!(
            xff(
                "127.0.0.1",
                &t,
                &["[::ffff:203.0.113.7]:80, ::ffff:10.0.0.1"]
            ),
            ip("203.0.113.7")
        );
        assert_eq!(
            fwd("127.0.0.1", &t, &["for=\"[::ffff:192.0.2.1]\""]),
            ip("192.0.2.1")
        );
        // Trusted lists written as mapped networks match IPv4 peers, and the reverse.
        let mapped = nets(&["::ffff:10.0.0.0/104"]);
        assert!(mapped.contains(ip("10.1.2.3")));
        assert!(mapped.contains(ip("::ffff:10.1.2.3")));
        assert!(!mapped.contains(ip("11.0.0.1")));
        assert_eq!(
            xff("10.0.0.1", &mapped, &["203.0.113.7"]),
            ip("203.0.113.7")
        );
        assert!(lan().contains(ip("::ffff:10.9.9.9")));
        // A mapped network shorter than /96 is an ordinary IPv6 network.
        let wide = nets(&["::/64"]);
        assert!(wide.contains(ip("::1")));
        assert!(!wide.contains(ip("10.0.0.1")));
    }

    #[test]
    fn contains_matches_networks() {
        let t = nets(&["192.168.1.77/24", "2001:db8:1::/48"]);
        assert!(!t.is_empty());
        assert!(t.contains(ip("192.168.1.1")));
        assert!(!t.contains(ip("192.168.2.1")));
        assert!(t.contains(ip("2001:db8:1:ffff::1")));
        assert!(!t.contains(ip("2001:db8:2::1")));
    }

    mod middleware {
        use super::*;
        use axum::body::Body;
        use axum::extract::Extension;
        use axum::routing::get;
        use axum::Router;
        use tower::ServiceExt;

        async fn show(
            Extension(ClientIp(c)): Extension<ClientIp>,
            Extension(PeerIp(p)): Extension<PeerIp>,
        ) -> String {
            format!("{c} {p}")
        }

        async fn call(app: Router, peer: Option<&str>, headers: &[(&str, &str)]) -> String {
            let mut req = http::Request::builder().uri("/");
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let mut req = req.body(Body::empty()).expect("request");
            if let Some(p) = peer {
                req.extensions_mut()
                    .insert(ConnectInfo(SocketAddr::new(ip(p), 40000)));
            }
            let res = app.oneshot(req).await.expect("infallible service");
            let bytes = axum::body::to_bytes(res.into_body(), 1024)
                .await
                .expect("body");
            String::from_utf8(bytes.to_vec()).expect("utf-8 body")
        }

        fn app(trusted: TrustedProxies) -> Router {
            Router::new()
                .route("/", get(show))
                .layer(axum::middleware::from_fn_with_state(trusted, resolve))
        }

        #[tokio::test]
        async fn inserts_client_and_peer() {
            let headers = [
                ("x-forwarded-for", "6.6.6.6"),
                ("x-forwarded-for", "203.0.113.7, 10.0.0.2"),
                ("forwarded", "for=192.0.2.1"),
            ];
            assert_eq!(
                call(app(lan()), Some("::ffff:127.0.0.1"), &headers).await,
                "203.0.113.7 127.0.0.1"
            );
            assert_eq!(
                call(app(lan()), Some("198.51.100.1"), &headers).await,
                "198.51.100.1 198.51.100.1"
            );
            assert_eq!(
                call(
                    app(lan()),
                    Some("127.0.0.1"),
                    &[("forwarded", "for=192.0.2.1")]
                )
                .await,
                "192.0.2.1 127.0.0.1"
            );
            assert_eq!(
                call(app(TrustedProxies::default()), Some("127.0.0.1"), &headers).await,
                "127.0.0.1 127.0.0.1"
            );
            assert_eq!(call(app(lan()), None, &headers).await, ":: ::");
        }
    }
}
