//! `filesystem.stat` (plugins/filesystem.py): what a path on the NAS is, without following
//! a final symbolic link (`type` is `SYMLINK` for one).

use serde_json::Value;

use super::NasError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    Directory,
    File,
    Symlink,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathStat {
    pub kind: PathKind,
    /// Hard links to the entry: more than one for a file means it is also elsewhere.
    pub nlink: u64,
}

pub fn parse(value: &Value) -> Result<PathStat, NasError> {
    let kind = match value.get("type").and_then(Value::as_str) {
        Some("DIRECTORY") => PathKind::Directory,
        Some("FILE") => PathKind::File,
        Some("SYMLINK") => PathKind::Symlink,
        Some(_) => PathKind::Other,
        None => {
            return Err(NasError::Protocol(String::from(
                "filesystem.stat answered without a type",
            )))
        }
    };
    let nlink = value.get("nlink").and_then(Value::as_u64).ok_or_else(|| {
        NasError::Protocol(String::from("filesystem.stat answered without nlink"))
    })?;
    Ok(PathStat { kind, nlink })
}

/// `filesystem.stat` raises `CallError(ENOENT)` for a path that does not exist.
pub fn absent(error: &NasError) -> bool {
    matches!(error, NasError::Call { errname, .. } if errname == "ENOENT")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kinds_and_links() {
        let stat = parse(&json!({"type": "SYMLINK", "nlink": 1, "realpath": "/root"})).unwrap();
        assert_eq!(
            stat,
            PathStat {
                kind: PathKind::Symlink,
                nlink: 1
            }
        );
        let stat = parse(&json!({"type": "FILE", "nlink": 2})).unwrap();
        assert_eq!(stat.nlink, 2);
        assert_eq!(
            parse(&json!({"type": "SOCKET", "nlink": 1})).unwrap().kind,
            PathKind::Other
        );
        assert!(parse(&json!({"nlink": 1})).is_err());
        assert!(parse(&json!({"type": "FILE"})).is_err());
    }
}
