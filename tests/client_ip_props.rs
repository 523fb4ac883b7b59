//! Property tests for the trusted-proxy client-IP resolver: arbitrary header bytes never
//! panic and never invent an address; an untrusted peer is always the client; and whatever a
//! client prepends to the forwarding headers, the address our trusted proxies recorded wins.

// Test code: a failed unwrap, expect or panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use passgate::web::client_ip::{normalise, resolve_client_ip, TrustedProxies};
use proptest::prelude::*;

fn any_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|o| IpAddr::V4(Ipv4Addr::from(o))),
        any::<[u8; 16]>().prop_map(|o| IpAddr::V6(Ipv6Addr::from(o))),
        // IPv4-mapped IPv6, which must be treated as the IPv4 address.
        any::<[u8; 4]>().prop_map(|o| IpAddr::V6(Ipv4Addr::from(o).to_ipv6_mapped())),
    ]
}

fn any_net() -> impl Strategy<Value = IpNet> {
    prop_oneof![
        (any::<[u8; 4]>(), 0u8..=32)
            .prop_map(|(o, p)| IpNet::V4(Ipv4Net::new(Ipv4Addr::from(o), p).unwrap().trunc())),
        (any::<[u8; 16]>(), 0u8..=128)
            .prop_map(|(o, p)| IpNet::V6(Ipv6Net::new(Ipv6Addr::from(o), p).unwrap().trunc())),
        (any::<[u8; 4]>(), 96u8..=128).prop_map(|(o, p)| {
            IpNet::V6(
                Ipv6Net::new(Ipv4Addr::from(o).to_ipv6_mapped(), p)
                    .unwrap()
                    .trunc(),
            )
        }),
    ]
}

/// 1 to 4 networks, none of them the whole address space of a family (so that untrusted
/// addresses exist in both families most of the time).
fn trusted_nets() -> impl Strategy<Value = Vec<IpNet>> {
    proptest::collection::vec(any_net(), 1..4)
}

/// An address inside `net`, from random host bits.
fn host_in(net: &IpNet, bits: u128) -> IpAddr {
    match net {
        IpNet::V4(n) => {
            let host = u32::from(n.hostmask()) & (bits as u32);
            IpAddr::V4(Ipv4Addr::from(u32::from(n.network()) | host))
        }
        IpNet::V6(n) => {
            let host = u128::from(n.hostmask()) & bits;
            IpAddr::V6(Ipv6Addr::from(u128::from(n.network()) | host))
        }
    }
}

/// One way of writing `ip` as an `X-Forwarded-For` entry that the resolver must accept.
fn xff_syntax(ip: IpAddr, style: u8, port: u16) -> String {
    let pad = if style & 8 != 0 { " \t" } else { "" };
    let body = match (ip, style % 4) {
        (IpAddr::V4(a), 0 | 2) => a.to_string(),
        (IpAddr::V4(a), _) => format!("{a}:{port}"),
        (IpAddr::V6(a), 0) => a.to_string(),
        (IpAddr::V6(a), 1) => format!("[{a}]"),
        (IpAddr::V6(a), _) => format!("[{a}]:{port}"),
    };
    format!("{pad}{body}{pad}")
}

/// One way of writing `ip` as a `Forwarded` element that the resolver must accept.
fn forwarded_syntax(ip: IpAddr, style: u8, port: u16) -> String {
    let name = ["for", "For", "FOR"][usize::from(style % 3)];
    let node = match ip {
        IpAddr::V4(a) if style & 4 != 0 => format!("\"{a}:{port}\""),
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) if style & 4 != 0 => format!("\"[{a}]:{port}\""),
        IpAddr::V6(a) => format!("\"[{a}]\""),
    };
    match (style >> 4) & 3 {
        0 => format!("{name}={node}"),
        1 => format!("{name}={node};proto=https"),
        2 => format!("proto=http;{name}={node};by=\"_proxy\""),
        _ => format!(" host=\"example.com\"; {name}={node} ;by=10.0.0.1"),
    }
}

/// Candidate addresses textually present in header lines: maximal runs of IP-literal bytes,
/// as they stand or without a trailing `:port`. Anything the resolver returns, other than the
/// peer, must be one of these (after normalisation).
fn addresses_in(lines: &[Vec<u8>]) -> Vec<IpAddr> {
    let mut found = Vec::new();
    for line in lines {
        for run in line.split(|b| !(b.is_ascii_hexdigit() || *b == b'.' || *b == b':')) {
            let Ok(run) = std::str::from_utf8(run) else {
                continue;
            };
            if let Ok(ip) = run.parse::<IpAddr>() {
                found.push(normalise(ip));
            }
            if let Some((head, _)) = run.rsplit_once(':') {
                if let Ok(ip) = head.parse::<IpAddr>() {
                    found.push(normalise(ip));
                }
            }
        }
    }
    found
}

fn as_slices(lines: &[Vec<u8>]) -> Vec<&[u8]> {
    lines.iter().map(Vec::as_slice).collect()
}

/// Header lines: arbitrary bytes, or plausible-looking lists mixing real, trusted-looking,
/// and broken entries.
fn header_lines() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let entry = prop_oneof![
        (any_ip(), any::<u8>(), any::<u16>()).prop_map(|(ip, s, p)| xff_syntax(ip, s, p)),
        (any_ip(), any::<u8>(), any::<u16>()).prop_map(|(ip, s, p)| forwarded_syntax(ip, s, p)),
        (0u8..4).prop_map(|last| format!("10.0.0.{last}")),
        (0u16..4).prop_map(|last| format!("[fd00::{last}]:80")),
        "[0-9a-fA-F:.\\[\\]\" ;=_,forFOR\t-]{0,24}",
        Just("unknown".to_owned()),
        Just("for=_hidden".to_owned()),
    ];
    let structured = proptest::collection::vec(entry, 0..12).prop_map(|e| e.join(",").into_bytes());
    let line = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        structured,
        proptest::collection::vec(any::<u8>(), 0..6000),
    ];
    proptest::collection::vec(line, 0..4)
}

fn trusted_with_lan(extra: Vec<IpNet>) -> TrustedProxies {
    let mut nets: Vec<IpNet> = ["10.0.0.0/8", "fd00::/8"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    nets.extend(extra);
    TrustedProxies::new(nets)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    /// Never panics, and the result is the peer or an address written in the chosen header.
    #[test]
    fn never_panics_and_never_invents(
        peer in prop_oneof![any_ip(), (0u8..4).prop_map(|l| IpAddr::from([10, 0, 0, l]))],
        extra in proptest::collection::vec(any_net(), 0..3),
        xff in header_lines(),
        fwd in header_lines(),
        use_xff in any::<bool>(),
    ) {
        let trusted = trusted_with_lan(extra);
        let (x, f) = if use_xff { (xff, fwd) } else { (Vec::new(), fwd) };
        let got = resolve_client_ip(peer, &trusted, &as_slices(&x), &as_slices(&f));
        let chosen = if x.is_empty() { &f } else { &x };
        prop_assert!(
            got == normalise(peer) || addresses_in(chosen).contains(&got),
            "got {got} from peer {peer}, header {:?}", chosen.iter().map(|l| String::from_utf8_lossy(l)).collect::<Vec<_>>()
        );
        prop_assert_eq!(got, normalise(got));
    }

    /// Empty trusted list: the result is the peer, whatever the headers say.
    #[test]
    fn no_trusted_proxies_means_the_peer(peer in any_ip(), xff in header_lines(), fwd in header_lines()) {
        let got = resolve_client_ip(peer, &TrustedProxies::default(), &as_slices(&xff), &as_slices(&fwd));
        prop_assert_eq!(got, normalise(peer));
    }

    /// An untrusted peer is always the client.
    #[test]
    fn untrusted_peer_is_the_client(
        nets in trusted_nets(),
        peer in any_ip(),
        xff in header_lines(),
        fwd in header_lines(),
    ) {
        let trusted = TrustedProxies::new(nets);
        prop_assume!(!trusted.contains(peer));
        let got = resolve_client_ip(peer, &trusted, &as_slices(&xff), &as_slices(&fwd));
        prop_assert_eq!(got, normalise(peer));
    }

    /// A real client behind a chain of trusted proxies is found, whatever the client prepends
    /// (arbitrary bytes, as part of the same line or as earlier header lines, any size), and
    /// however the proxies split their part over lines.
    #[test]
    fn prepended_entries_never_change_the_client(
        nets in trusted_nets(),
        client in any_ip(),
        hop_bits in proptest::collection::vec(any::<(usize, u128)>(), 0..8),
        peer_bits in any::<(usize, u128)>(),
        styles in proptest::collection::vec((any::<u8>(), any::<u16>(), any::<bool>()), 9),
        prefix_lines in proptest::collection::vec(
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..64),
                "[0-9a-fA-F:.\\[\\]\" ;=_,forFOR\t-]{0,64}".prop_map(String::into_bytes),
                proptest::collection::vec(any::<u8>(), 0..9000),
            ],
            0..3,
        ),
        join_prefix_inline in any::<bool>(),
        use_forwarded in any::<bool>(),
    ) {
        let trusted = TrustedProxies::new(nets.clone());
        prop_assume!(!trusted.contains(client));
        let pick = |(i, bits): (usize, u128)| host_in(&nets[i % nets.len()], bits);
        let peer = pick(peer_bits);
        let hops: Vec<IpAddr> = hop_bits.into_iter().map(pick).collect();

        // The proxies' part: client, then each hop, each possibly on its own line.
        let mut right: Vec<String> = vec![String::new()];
        for (i, ip) in std::iter::once(client).chain(hops).enumerate() {
            let (style, port, new_line) = styles[i];
            let text = if use_forwarded { forwarded_syntax(ip, style, port) } else { xff_syntax(ip, style, port) };
            let Some(current) = right.last_mut() else { unreachable!() };
            if current.is_empty() {
                current.push_str(&text);
            } else if new_line {
                right.push(text);
            } else {
                current.push_str(", ");
                current.push_str(&text);
            }
        }

        // The client's part goes in front: on earlier lines, or glued to the first line.
        let mut lines: Vec<Vec<u8>> = prefix_lines.clone();
        let mut right = right.into_iter().map(String::into_bytes);
        if let Some(first) = right.next() {
            if join_prefix_inline && !lines.is_empty() {
                if let Some(last) = lines.last_mut() {
                    last.extend_from_slice(b",");
                    last.extend_from_slice(&first);
                }
            } else {
                lines.push(first);
            }
        }
        lines.extend(right);

        let got = if use_forwarded {
            resolve_client_ip(peer, &trusted, &[], &as_slices(&lines))
        } else {
            resolve_client_ip(peer, &trusted, &as_slices(&lines), &[])
        };
        prop_assert_eq!(got, normalise(client));
    }

    /// Well-formed X-Forwarded-For within the limits agrees with the naive model: parse every
    /// entry, walk right to left, skip trusted, else the left-most, else the peer.
    #[test]
    fn agrees_with_the_naive_model(
        nets in trusted_nets(),
        peer_bits in any::<(usize, u128)>(),
        entries in proptest::collection::vec((any::<bool>(), any::<(usize, u128)>(), any_ip(), any::<u8>(), any::<u16>()), 0..20),
        split_lines in proptest::collection::vec(any::<bool>(), 20),
    ) {
        let trusted = TrustedProxies::new(nets.clone());
        let pick = |(i, bits): (usize, u128)| host_in(&nets[i % nets.len()], bits);
        let peer = pick(peer_bits);
        let ips: Vec<IpAddr> = entries.iter().map(|&(inside, bits, other, _, _)| if inside { pick(bits) } else { other }).collect();
        let mut lines: Vec<String> = Vec::new();
        for (i, (ip, &(_, _, _, style, port))) in ips.iter().zip(&entries).enumerate() {
            let text = xff_syntax(*ip, style, port);
            match lines.last_mut() {
                Some(line) if !split_lines[i] => { line.push(','); line.push_str(&text); }
                _ => lines.push(text),
            }
        }
        let model = ips.iter().rev().map(|ip| normalise(*ip)).find(|ip| !trusted.contains(*ip))
            .or_else(|| ips.first().map(|ip| normalise(*ip)))
            .unwrap_or(normalise(peer));
        let lines: Vec<Vec<u8>> = lines.into_iter().map(String::into_bytes).collect();
        prop_assert_eq!(resolve_client_ip(peer, &trusted, &as_slices(&lines), &[]), model);
    }
}
