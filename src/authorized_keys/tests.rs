//! Keys made by `ssh-keygen` (openssh-client), so that what OpenSSH writes is what is parsed.

use std::path::Path;
use std::process::Command;

use base64::Engine;

use super::*;

const POLICY: KeyPolicy = KeyPolicy {
    max_keys: 10,
    allow_certificates: false,
};

/// `ssh-keygen -t TYPE [-b BITS]`: the public line and the private file's text.
fn keygen(dir: &Path, name: &str, args: &[&str]) -> (String, String) {
    let path = dir.join(name);
    let status = Command::new("ssh-keygen")
        .args(args)
        .args(["-q", "-N", "", "-C", &format!("{name}@laptop"), "-f"])
        .arg(&path)
        .status()
        .expect("ssh-keygen (openssh-client) runs");
    assert!(status.success(), "ssh-keygen {args:?}");
    let public = std::fs::read_to_string(path.with_extension("pub")).expect("pub");
    let private = std::fs::read_to_string(&path).expect("private");
    (public.trim().to_owned(), private)
}

/// `ssh-keygen -l -E sha256`'s fingerprint of a public key file.
fn keygen_fingerprint(dir: &Path, public: &str) -> String {
    let path = dir.join("fp.pub");
    std::fs::write(&path, public).expect("write");
    let out = Command::new("ssh-keygen")
        .args(["-l", "-E", "sha256", "-f"])
        .arg(&path)
        .output()
        .expect("ssh-keygen -l");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .expect("a fingerprint")
        .to_owned()
}

fn refusals(input: &str, policy: KeyPolicy) -> Vec<LineRefusal> {
    parse_keys(input, policy).expect_err("refused")
}

fn one(line: usize, reason: Refusal) -> Vec<LineRefusal> {
    vec![LineRefusal { line, reason }]
}

/// SSH wire strings, to build the security-key types no test machine can generate.
fn wire(parts: &[&[u8]]) -> String {
    let mut blob = Vec::new();
    for p in parts {
        blob.extend_from_slice(&u32::try_from(p.len()).unwrap().to_be_bytes());
        blob.extend_from_slice(p);
    }
    base64::engine::general_purpose::STANDARD.encode(blob)
}

fn wire_fields(base64_blob: &str) -> Vec<Vec<u8>> {
    let blob = base64::engine::general_purpose::STANDARD
        .decode(base64_blob)
        .unwrap();
    let mut fields = Vec::new();
    let mut rest = &blob[..];
    while rest.len() >= 4 {
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        fields.push(rest[4..4 + len].to_vec());
        rest = &rest[4 + len..];
    }
    fields
}

#[test]
fn every_allowed_type_made_by_ssh_keygen_is_accepted_with_its_fingerprint() {
    let dir = tempfile::tempdir().unwrap();
    let made = [
        ("ed", vec!["-t", "ed25519"], "ssh-ed25519", None),
        (
            "p256",
            vec!["-t", "ecdsa", "-b", "256"],
            "ecdsa-sha2-nistp256",
            None,
        ),
        (
            "p384",
            vec!["-t", "ecdsa", "-b", "384"],
            "ecdsa-sha2-nistp384",
            None,
        ),
        (
            "p521",
            vec!["-t", "ecdsa", "-b", "521"],
            "ecdsa-sha2-nistp521",
            None,
        ),
        (
            "rsa",
            vec!["-t", "rsa", "-b", "3072"],
            "ssh-rsa",
            Some(3072),
        ),
    ];
    let mut input = String::new();
    let mut expected = Vec::new();
    for (name, args, algorithm, bits) in &made {
        let (public, _) = keygen(dir.path(), name, args);
        expected.push((
            *algorithm,
            keygen_fingerprint(dir.path(), &public),
            format!("{name}@laptop"),
            *bits,
            public.clone(),
        ));
        input.push_str(&public);
        input.push('\n');
    }
    let keys = parse_keys(&input, POLICY).expect("all accepted");
    assert_eq!(keys.len(), made.len());
    for (key, (algorithm, fingerprint, comment, bits, public)) in keys.iter().zip(&expected) {
        assert_eq!(key.algorithm, *algorithm);
        assert_eq!(&key.fingerprint, fingerprint, "as ssh-keygen -l prints it");
        assert_eq!(&key.comment, comment);
        assert_eq!(key.bits, *bits);
        assert_eq!(key.line(), public, "re-serialised as OpenSSH wrote it");
    }
    let stored = render(&keys);
    assert_eq!(stored.lines().count(), made.len());
    let (listed, other) = read_stored(&stored);
    assert_eq!(
        (listed, other),
        (keys, 0),
        "what is stored reads back the same"
    );
}

#[test]
fn security_key_types_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let (ed, _) = keygen(dir.path(), "ed", &["-t", "ed25519"]);
    let ed_fields = wire_fields(ed.split_whitespace().nth(1).unwrap());
    let sk_ed = format!(
        "sk-ssh-ed25519@openssh.com {} yubikey",
        wire(&[b"sk-ssh-ed25519@openssh.com", &ed_fields[1], b"ssh:"])
    );
    let (p256, _) = keygen(dir.path(), "p256", &["-t", "ecdsa", "-b", "256"]);
    let p_fields = wire_fields(p256.split_whitespace().nth(1).unwrap());
    let sk_ecdsa = format!(
        "sk-ecdsa-sha2-nistp256@openssh.com {} yubikey",
        wire(&[
            b"sk-ecdsa-sha2-nistp256@openssh.com",
            &p_fields[1],
            &p_fields[2],
            b"ssh:"
        ])
    );
    for line in [sk_ed, sk_ecdsa] {
        let keys = parse_keys(&line, POLICY).unwrap_or_else(|e| panic!("{line}: {e:?}"));
        assert_eq!(keys[0].line(), line);
        assert_eq!(keys[0].fingerprint, keygen_fingerprint(dir.path(), &line));
    }
}

#[test]
fn short_rsa_and_dsa_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (rsa, _) = keygen(dir.path(), "rsa2048", &["-t", "rsa", "-b", "2048"]);
    assert_eq!(
        refusals(&rsa, POLICY),
        one(1, Refusal::RsaTooShort { bits: 2048 })
    );
    // ssh-dss, built by hand: OpenSSH 9.8 and later can no longer make one.
    let dss = format!(
        "ssh-dss {} old",
        wire(&[
            b"ssh-dss",
            &[0x00, 0xc1],
            &[0x00, 0xd1],
            &[0x00, 0xe1],
            &[0x00, 0xf1]
        ])
    );
    assert_eq!(
        refusals(&dss, POLICY),
        one(
            1,
            Refusal::Algorithm {
                name: "ssh-dss".into()
            }
        )
    );
}

#[test]
fn options_are_refused_and_never_written() {
    let dir = tempfile::tempdir().unwrap();
    let (ed, _) = keygen(dir.path(), "ed", &["-t", "ed25519"]);
    for prefix in [
        "command=\"/bin/sh -c id\"",
        "from=\"10.0.0.0/8\"",
        "no-pty,permitopen=\"*:*\"",
        "restrict",
    ] {
        let line = format!("{prefix} {ed}");
        assert_eq!(refusals(&line, POLICY), one(1, Refusal::Options), "{line}");
    }
}

#[test]
fn a_pasted_private_key_is_one_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let (ed, private) = keygen(dir.path(), "ed", &["-t", "ed25519"]);
    let input = format!("{ed}\n{private}");
    assert_eq!(refusals(&input, POLICY), one(2, Refusal::PrivateKey));
    let (_, rsa_private) = keygen(dir.path(), "rsa", &["-t", "rsa", "-b", "3072", "-m", "PEM"]);
    assert_eq!(refusals(&rsa_private, POLICY), one(1, Refusal::PrivateKey));
    // The body alone, without its armour.
    let body = private.lines().nth(1).unwrap();
    assert_eq!(refusals(body, POLICY), one(1, Refusal::PrivateKey));
    assert_eq!(
        refusals("PuTTY-User-Key-File-3: ssh-ed25519", POLICY),
        one(1, Refusal::PrivateKey)
    );
}

/// `ssh-keygen -s`: a user certificate, valid for `validity` (`None`: ssh-keygen's "forever").
fn certify(dir: &Path, validity: Option<&str>) -> String {
    let mut command = Command::new("ssh-keygen");
    command.args(["-q", "-s"]).arg(dir.join("ca"));
    command.args(["-I", "alice", "-n", "alice"]);
    if let Some(v) = validity {
        command.args(["-V", v]);
    }
    assert!(command
        .arg(dir.join("user.pub"))
        .status()
        .unwrap()
        .success());
    let cert = std::fs::read_to_string(dir.join("user-cert.pub")).unwrap();
    cert.trim().to_owned()
}

#[test]
fn certificates_only_when_allowed_and_with_an_expiry() {
    let dir = tempfile::tempdir().unwrap();
    keygen(dir.path(), "ca", &["-t", "ed25519"]);
    keygen(dir.path(), "user", &["-t", "ed25519"]);
    let cert = certify(dir.path(), Some("-1d:+52w"));
    assert_eq!(refusals(&cert, POLICY), one(1, Refusal::Certificate));
    let allowed = KeyPolicy {
        allow_certificates: true,
        ..POLICY
    };
    let keys = parse_keys(&cert, allowed).expect("allowed");
    assert_eq!(keys[0].algorithm, "ssh-ed25519-cert-v01@openssh.com");
    assert_eq!(keys[0].line(), cert);
    let forever = certify(dir.path(), None);
    assert_eq!(
        refusals(&forever, allowed),
        one(1, Refusal::CertificateWithoutExpiry)
    );
}

#[test]
fn duplicates_too_many_and_too_large() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = keygen(dir.path(), "a", &["-t", "ed25519"]);
    let (b, _) = keygen(dir.path(), "b", &["-t", "ed25519"]);
    let (c, _) = keygen(dir.path(), "c", &["-t", "ed25519"]);
    // The same key under another comment is the same key.
    let renamed = format!("{} other-comment", a.rsplit_once(' ').unwrap().0);
    assert_eq!(
        refusals(&format!("{a}\n\n{renamed}"), POLICY),
        one(3, Refusal::Duplicate { first_line: 1 })
    );
    let two = KeyPolicy {
        max_keys: 2,
        ..POLICY
    };
    assert_eq!(
        refusals(&format!("{a}\n{b}\n{c}"), two),
        one(3, Refusal::TooMany { max: 2 })
    );
    let big = format!("{a}\n{}", "#".repeat(MAX_TOTAL_BYTES));
    assert_eq!(refusals(&big, POLICY), one(0, Refusal::TooLarge));
}

#[test]
fn added_lines_count_with_the_keys_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = keygen(dir.path(), "a", &["-t", "ed25519"]);
    let (b, _) = keygen(dir.path(), "b", &["-t", "ecdsa", "-b", "256"]);
    let (c, _) = keygen(dir.path(), "c", &["-t", "ed25519"]);
    let kept = parse_keys(&a, POLICY).unwrap();
    // Kept first, then the additions, in order.
    let all = parse_added(&kept, &format!("\n{b}\n{c}"), POLICY).unwrap();
    let comments: Vec<&str> = all.iter().map(|k| k.comment.as_str()).collect();
    assert_eq!(comments, ["a@laptop", "b@laptop", "c@laptop"]);
    // Line numbers are the pasted text's.
    assert_eq!(
        parse_added(&kept, &format!("{b}\n{a}"), POLICY).unwrap_err(),
        one(2, Refusal::AlreadyStored)
    );
    let two = KeyPolicy {
        max_keys: 2,
        ..POLICY
    };
    assert_eq!(
        parse_added(&kept, &format!("{b}\n{c}"), two).unwrap_err(),
        one(2, Refusal::TooMany { max: 2 })
    );
    let nearly_full = "#".repeat(MAX_TOTAL_BYTES - a.len());
    assert_eq!(
        parse_added(&kept, &nearly_full, POLICY).unwrap_err(),
        one(0, Refusal::TooLarge)
    );
}

#[test]
fn unprintable_and_garbage_lines_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = keygen(dir.path(), "a", &["-t", "ed25519"]);
    let (rsa, _) = keygen(dir.path(), "rsa", &["-t", "rsa", "-b", "3072"]);
    let ed_body = a.split_whitespace().nth(1).unwrap();
    let input = [
        format!("{a} \u{202E}evil"),
        format!("{a}\u{7}"),
        String::from("hello world"),
        format!("ssh-rsa {ed_body} mislabelled"),
        String::from("ssh-ed25519 not-base64!"),
        rsa.clone(),
    ]
    .join("\n");
    assert_eq!(
        refusals(&input, POLICY),
        vec![
            LineRefusal {
                line: 1,
                reason: Refusal::NonPrintable
            },
            LineRefusal {
                line: 2,
                reason: Refusal::NonPrintable
            },
            LineRefusal {
                line: 3,
                reason: Refusal::Unreadable
            },
            LineRefusal {
                line: 4,
                reason: Refusal::Unreadable
            },
            LineRefusal {
                line: 5,
                reason: Refusal::Unreadable
            },
        ]
    );
}

#[test]
fn what_is_written_is_re_encoded_not_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = keygen(dir.path(), "a", &["-t", "ed25519"]);
    let (ty, rest) = a.split_once(' ').unwrap();
    let (body, comment) = rest.split_once(' ').unwrap();
    let messy = format!("  {ty}\t{body}   {comment}  \r\n# a note\n\n");
    let keys = parse_keys(&messy, POLICY).unwrap();
    assert_eq!(render(&keys), a);
    assert_eq!(
        parse_keys("", POLICY).unwrap(),
        vec![],
        "no keys is allowed"
    );
}

#[test]
fn stored_lines_this_portal_would_refuse_are_counted_not_listed() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = keygen(dir.path(), "a", &["-t", "ed25519"]);
    let stored = format!("command=\"backup\" {a}\n{a}\ngarbage");
    let (keys, other) = read_stored(&stored);
    assert_eq!(keys.len(), 1);
    assert_eq!(other, 2);
}
