//! `set_ssh_keys` of the portal's TrueNAS client against the fake, which keeps `sshpubkey`
//! as middlewared does (tests/support/fake_truenas/ssh_keys.rs): what TrueNAS reads back is
//! the only proof that keys were stored.

// Test code: a failed unwrap, expect or panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;

use passgate::config::Config;
use passgate::truenas::path_stat::{PathKind, PathStat};
use passgate::truenas::{connect, NasClient, NasError};
use support::fake_truenas::{FakeHome, FakeTrueNas, FakeUser, Flavour};

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl laptop";

fn client(fake: &FakeTrueNas, api: &str) -> Arc<dyn NasClient> {
    let env = [
        ("PASSGATE_TRUENAS__URL", fake.url()),
        ("PASSGATE_TRUENAS__API_KEY", fake.api_key().to_owned()),
        ("PASSGATE_TRUENAS__API_USER", fake.api_user().to_owned()),
        ("PASSGATE_TRUENAS__TLS_FINGERPRINT", fake.fingerprint()),
        ("PASSGATE_TRUENAS__API", api.to_owned()),
        ("PASSGATE_LOG__SYSLOG", String::from("off")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v));
    let config = Config::load_from(None, env).expect("config");
    connect::build(&config).expect("client")
}

fn users() -> Vec<FakeUser> {
    vec![
        FakeUser::new("dana", "dana-password"),
        FakeUser {
            home: FakeHome::NotDataset,
            ..FakeUser::new("nohome", "nohome-password")
        },
        FakeUser {
            home: FakeHome::Missing,
            ..FakeUser::new("gone", "gone-password")
        },
    ]
}

/// `filesystem.stat` does not follow a final symlink, and says "not found" as `None`.
async fn stats(fake: &FakeTrueNas, nas: &dyn NasClient) {
    let home = fake.home("dana");
    let at = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let stat = nas
        .stat_path(&at(&home))
        .await
        .unwrap()
        .expect("the home exists");
    assert_eq!(stat.kind, PathKind::Directory);
    assert_eq!(
        nas.stat_path(&at(&home.join("nothing"))).await.unwrap(),
        None
    );
    std::fs::write(home.join("file"), "x").unwrap();
    std::os::unix::fs::symlink(home.join("file"), home.join("link")).unwrap();
    std::fs::hard_link(home.join("file"), home.join("twin")).unwrap();
    let link = nas
        .stat_path(&at(&home.join("link")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(link.kind, PathKind::Symlink);
    let twin = nas
        .stat_path(&at(&home.join("twin")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        twin,
        PathStat {
            kind: PathKind::File,
            nlink: 2
        }
    );
}

async fn round_trip(fake: &FakeTrueNas, nas: &dyn NasClient) {
    let dana = nas.get_user("dana").await.unwrap().expect("dana");
    assert_eq!(dana.ssh_keys, None);
    assert!(dana.home.as_deref().unwrap().ends_with("/tank/home/dana"));
    let stored = nas.set_ssh_keys(&dana, KEY).await.expect("stored");
    assert_eq!(stored.ssh_keys.as_deref(), Some(KEY));
    assert_eq!(
        fake.authorized_keys("dana").as_deref(),
        Some(&*format!("{KEY}\n"))
    );
    let read = nas.get_user("dana").await.unwrap().unwrap();
    assert_eq!(read.ssh_keys.as_deref(), Some(KEY));
    let cleared = nas.set_ssh_keys(&dana, "").await.expect("cleared");
    assert_eq!(cleared.ssh_keys, None);
    assert_eq!(fake.authorized_keys("dana"), None);

    let nohome = nas.get_user("nohome").await.unwrap().unwrap();
    assert_eq!(nohome.home.as_deref(), Some("/var/empty"));
    match nas.set_ssh_keys(&nohome, KEY).await {
        Err(NasError::Validation(messages)) => assert_eq!(
            messages,
            vec![String::from(
                "Home directory is not writable, leave this blank\""
            )]
        ),
        other => panic!("expected TrueNAS' refusal, got {other:?}"),
    }

    let gone = nas.get_user("gone").await.unwrap().unwrap();
    let silent = nas
        .set_ssh_keys(&gone, KEY)
        .await
        .expect("TrueNAS says yes");
    assert_eq!(silent.ssh_keys, None, "but reads back nothing");
}

#[tokio::test]
async fn keys_round_trip_over_json_rpc() {
    let fake = FakeTrueNas::start(Flavour::V27, users()).await;
    round_trip(&fake, &*client(&fake, "jsonrpc")).await;
    stats(&fake, &*client(&fake, "jsonrpc")).await;
}

/// 25.10's REST API: `PUT /user/id/ID`, the same plugin behind it.
#[tokio::test]
async fn keys_round_trip_over_rest() {
    let fake = FakeTrueNas::start(Flavour::V25_10, users()).await;
    round_trip(&fake, &*client(&fake, "rest")).await;
    stats(&fake, &*client(&fake, "rest")).await;
}
