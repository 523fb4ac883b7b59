//! SSH keys made by the real `ssh-keygen` (openssh-client), and the fingerprints it shows.

use std::path::Path;
use std::process::Command;

/// `ssh-keygen -t … -C NAME@laptop` in `dir`: the public line and the private file's text.
pub fn keygen(dir: &Path, name: &str, args: &[&str]) -> (String, String) {
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

/// `ssh-keygen -l -E sha256` of `NAME.pub` in `dir`: what the user sees on their machine.
pub fn fingerprint(dir: &Path, name: &str) -> String {
    let out = Command::new("ssh-keygen")
        .args(["-l", "-E", "sha256", "-f"])
        .arg(dir.join(format!("{name}.pub")))
        .output()
        .expect("ssh-keygen -l");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .expect("fingerprint")
        .to_owned()
}
