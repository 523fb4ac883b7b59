//! The SMB verifier against a real smbd (tests/support/samba.rs): right, wrong, unknown,
//! not-SMB, server down, silent or unreachable peers, guest mapping, IPv6.
//!
//! Needs root and Debian's `samba` package; without them these tests fail on purpose.
//! They run one at a time: pavao serialises libsmbclient process-wide anyway, and the
//! stuck-connect test deliberately keeps libsmbclient busy for 5 s.

// Test code: a failed unwrap, expect or panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/samba.rs"]
mod samba;

use std::net::{Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use passgate::truenas::NasUser;
use passgate::verify::smb::SmbVerifier;
use passgate::verify::{Account, Verdict, Verifier};
use samba::{SambaConfig, SambaServer};
use secrecy::SecretString;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const TIMEOUT: Duration = Duration::from_secs(5);

fn nas_user(username: &str, smb: bool) -> NasUser {
    NasUser {
        id: 42,
        uid: 4242,
        username: username.to_owned(),
        full_name: String::from("SMB Test"),
        local: true,
        locked: false,
        password_disabled: false,
        smb,
        builtin: false,
        twofactor: false,
        groups: Vec::new(),
        unixhash: None,
        aging: Default::default(),
        email: None,
        roles: Vec::new(),
        home: None,
        ssh_keys: None,
    }
}

fn verifier_for(server: &SambaServer, share: &str) -> SmbVerifier {
    SmbVerifier::new(server.host(), server.port(), share.to_owned(), TIMEOUT)
}

async fn check(v: &SmbVerifier, user: &NasUser, password: &str) -> Verdict {
    v.verify(Account::Real(user), &SecretString::from(password))
        .await
}

fn is_unavailable(v: &Verdict) -> bool {
    matches!(v, Verdict::Unavailable(_))
}

#[tokio::test]
async fn right_password_is_verified_through_ipc_for_a_user_with_no_share() {
    let _serial = SERIAL.lock().await;
    let server = SambaServer::start();
    let user = nas_user(server.username(), true);
    // Every spelling of the default share.
    for share in ["", "IPC$", "ipc$", "/IPC$", "\\\\IPC$", "//IPC$/"] {
        let v = verifier_for(&server, share);
        let verdict = check(&v, &user, server.password()).await;
        assert_eq!(
            verdict,
            Verdict::Verified,
            "share {share:?}; smbd log:\n{}",
            server.log_tail()
        );
    }
}

#[tokio::test]
async fn wrong_password_is_rejected() {
    let _serial = SERIAL.lock().await;
    let server = SambaServer::start();
    let user = nas_user(server.username(), true);
    let v = verifier_for(&server, "");
    let right = server.password().to_owned();
    let mut almost = right.clone();
    almost.pop();
    for wrong in [
        almost,
        format!("{right}x"),
        right.to_uppercase(),
        right.replace('ü', "u"),
        String::from("hunter2"),
    ] {
        assert_eq!(
            check(&v, &user, &wrong).await,
            Verdict::Rejected("wrong password"),
            "{wrong:?}"
        );
    }
    // The server still says yes to the right one afterwards (no lockout in between).
    assert_eq!(check(&v, &user, &right).await, Verdict::Verified);
}

#[tokio::test]
async fn unknown_user_is_rejected() {
    let _serial = SERIAL.lock().await;
    let server = SambaServer::start();
    let v = verifier_for(&server, "");
    let stranger = nas_user(&format!("nouser{}", std::process::id()), true);
    assert_eq!(
        check(&v, &stranger, server.password()).await,
        Verdict::Rejected("wrong password")
    );
}

#[tokio::test]
async fn non_smb_user_and_ghost_are_not_checked() {
    let _serial = SERIAL.lock().await;
    let server = SambaServer::start();
    let v = verifier_for(&server, "");
    let not_smb = nas_user(server.username(), false);
    let pw = SecretString::from(server.password());
    assert_eq!(
        v.verify(Account::Real(&not_smb), &pw).await,
        Verdict::CantTell("not an SMB user")
    );
    assert_eq!(
        v.verify(Account::Ghost(server.username()), &pw).await,
        Verdict::CantTell("not an SMB user")
    );
}

#[tokio::test]
async fn nul_in_the_password_is_rejected_before_libsmbclient_truncates_it() {
    let _serial = SERIAL.lock().await;
    let server = SambaServer::start();
    let user = nas_user(server.username(), true);
    let v = verifier_for(&server, "");
    // Handed to C as is, this would be checked as the right password.
    let with_nul = format!("{}\0anything", server.password());
    assert_eq!(
        check(&v, &user, &with_nul).await,
        Verdict::Rejected("password contains NUL")
    );
    assert_eq!(
        check(&v, &user, "").await,
        Verdict::Rejected("empty password")
    );
    // Beyond 255 bytes libsmbclient would check only the first 255: no answer is better.
    let long = format!("{}{}", server.password(), "x".repeat(256));
    assert_eq!(
        check(&v, &user, &long).await,
        Verdict::CantTell("password too long for SMB")
    );
}

#[tokio::test]
async fn server_down_is_unavailable_and_quick() {
    let _serial = SERIAL.lock().await;
    let mut server = SambaServer::start();
    let user = nas_user(server.username(), true);
    let v = verifier_for(&server, "");
    assert_eq!(check(&v, &user, server.password()).await, Verdict::Verified);

    server.stop();
    let start = Instant::now();
    let verdict = check(&v, &user, server.password()).await;
    let took = start.elapsed();
    assert_eq!(
        verdict,
        Verdict::Unavailable(String::from("connection refused"))
    );
    assert!(took < TIMEOUT, "took {took:?}");
}

#[tokio::test]
async fn silent_peer_is_unavailable_within_the_timeout() {
    let _serial = SERIAL.lock().await;
    // Accepts TCP connections and never says a word.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    let timeout = Duration::from_millis(800);
    let v = SmbVerifier::new("127.0.0.1".into(), port, String::new(), timeout);
    let user = nas_user("alice", true);
    let start = Instant::now();
    let verdict = check(&v, &user, "whatever").await;
    let took = start.elapsed();
    assert_eq!(verdict, Verdict::Unavailable(String::from("timed out")));
    assert!(took >= timeout && took < v.deadline(), "took {took:?}");
}

#[tokio::test]
async fn a_stuck_connect_is_cut_off_by_the_outer_deadline() {
    let _serial = SERIAL.lock().await;
    // A listener with a backlog of 0 whose queue is already full: the kernel drops further
    // SYNs, so libsmbclient sits in connect() for its fixed 5 s, ignoring its own timeout.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let _fillers: Vec<TcpStream> = (0..3)
        .filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_millis(300)).ok())
        .collect();

    let v = SmbVerifier::new(
        "127.0.0.1".into(),
        addr.port(),
        String::new(),
        Duration::from_millis(300),
    );
    let user = nas_user("alice", true);
    let start = Instant::now();
    let verdict = check(&v, &user, "whatever").await;
    let took = start.elapsed();
    assert!(is_unavailable(&verdict), "{verdict:?}");
    assert!(
        took < v.deadline() + Duration::from_millis(500),
        "took {took:?}"
    );
    eprintln!(
        "stuck connect: {verdict:?} after {took:?} (deadline {:?})",
        v.deadline()
    );

    // While that connect() is still stuck in C it holds pavao's lock: a second check waits
    // and gives up at its own deadline instead of piling up.
    let second = Instant::now();
    assert!(is_unavailable(&check(&v, &user, "whatever").await));
    assert!(second.elapsed() < v.deadline() + Duration::from_millis(500));

    // Let the stuck call finish before the next test needs libsmbclient: pavao's lock is
    // free again when a check against a closed port is refused at once instead of waiting
    // out its deadline behind the stuck one.
    drop(listener);
    let closed = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let probe = SmbVerifier::new(
        "127.0.0.1".into(),
        closed,
        String::new(),
        Duration::from_millis(300),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let asked = Instant::now();
        let verdict = check(&probe, &user, "whatever").await;
        assert!(is_unavailable(&verdict), "{verdict:?}");
        if asked.elapsed() < probe.deadline() / 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "libsmbclient still stuck after 30 s"
        );
    }
    eprintln!("the stuck connect let go after {:?}", start.elapsed());
}

#[tokio::test]
async fn guest_mapping_never_passes_for_a_verified_password() {
    let _serial = SERIAL.lock().await;
    for map_to_guest in ["Bad Password", "Bad User"] {
        let server = SambaServer::start_with(SambaConfig {
            map_to_guest,
            ..SambaConfig::default()
        });
        let user = nas_user(server.username(), true);
        let stranger = nas_user(&format!("nouser{}", std::process::id()), true);
        let v = verifier_for(&server, "");
        assert_eq!(
            check(&v, &user, server.password()).await,
            Verdict::Verified,
            "{map_to_guest}"
        );
        // The server hands out a guest session here; the verifier must not call that a yes.
        assert_eq!(
            check(&v, &user, "wrong password").await,
            Verdict::Rejected("wrong password"),
            "{map_to_guest}"
        );
        assert_eq!(
            check(&v, &stranger, "wrong password").await,
            Verdict::Rejected("wrong password"),
            "{map_to_guest}"
        );
    }
}

#[tokio::test]
async fn ipv6_literal_hosts_work() {
    let _serial = SERIAL.lock().await;
    let server = SambaServer::start_with(SambaConfig {
        bind: Ipv6Addr::LOCALHOST.into(),
        ..SambaConfig::default()
    });
    let user = nas_user(server.username(), true);
    for host in ["::1", "[::1]", "0:0:0:0:0:0:0:1"] {
        let v = SmbVerifier::new(host.into(), server.port(), String::new(), TIMEOUT);
        assert_eq!(
            check(&v, &user, server.password()).await,
            Verdict::Verified,
            "{host}"
        );
        assert_eq!(
            check(&v, &user, "nope").await,
            Verdict::Rejected("wrong password"),
            "{host}"
        );
    }
    // Sanity: nothing listens on the IPv4 side, so the answers above came over IPv6.
    let v4 = SocketAddr::from(([127, 0, 0, 1], server.port()));
    assert!(TcpStream::connect_timeout(&v4, Duration::from_millis(300)).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_checks_each_get_their_own_answer() {
    let _serial = SERIAL.lock().await;
    let server = SambaServer::start();
    let v = Arc::new(verifier_for(&server, ""));
    let user = Arc::new(nas_user(server.username(), true));
    let right = server.password().to_owned();
    let jobs: Vec<_> = (0..16)
        .map(|i| {
            let (v, user) = (v.clone(), user.clone());
            let password = if i % 2 == 0 {
                right.clone()
            } else {
                format!("wrong {i}")
            };
            tokio::spawn(async move {
                let verdict = v
                    .verify(Account::Real(&user), &SecretString::from(password))
                    .await;
                (i, verdict)
            })
        })
        .collect();
    for job in jobs {
        let (i, verdict) = job.await.unwrap();
        let expected = if i % 2 == 0 {
            Verdict::Verified
        } else {
            Verdict::Rejected("wrong password")
        };
        assert_eq!(verdict, expected, "job {i}");
    }
}

#[tokio::test]
async fn measured_cost_per_verification() {
    let _serial = SERIAL.lock().await;
    let server = SambaServer::start();
    let user = nas_user(server.username(), true);
    let v = verifier_for(&server, "");
    // The first login starts samba-dcerpcd on demand (~200 ms); keep it out of the figures.
    assert_eq!(check(&v, &user, server.password()).await, Verdict::Verified);

    const N: u32 = 20;
    let mut accepted = Duration::ZERO;
    let mut rejected = Duration::ZERO;
    for _ in 0..N {
        let start = Instant::now();
        assert_eq!(check(&v, &user, server.password()).await, Verdict::Verified);
        accepted += start.elapsed();
        let start = Instant::now();
        assert_eq!(
            check(&v, &user, "wrong").await,
            Verdict::Rejected("wrong password")
        );
        rejected += start.elapsed();
    }
    eprintln!(
        "smb accepted: {:?} per verification (mean of {N})",
        accepted / N
    );
    eprintln!(
        "smb rejected: {:?} per verification (mean of {N})",
        rejected / N
    );
    assert!(accepted / N < Duration::from_secs(1) && rejected / N < Duration::from_secs(1));
}
