//! `cargo xtask msrv-check`: the workspace's `rust-version` against what its locked
//! dependencies declare.
//!
//! The packages come from `cargo tree --locked --all-features --target all`, so every package
//! any feature or target of the workspace builds is counted (dev-dependencies too: the stated
//! version promises that `cargo test` works); their `rust-version` from `cargo metadata`. Each workspace member's `rust-version`
//! must be at least the highest one declared by a dependency.

use crate::json::Json;

/// A Rust version as `rust-version` writes it (`1.88` or `1.88.0`), compared numerically.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct RustVersion([u32; 3]);

impl RustVersion {
    /// Parses `major.minor[.patch]`.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let mut parts = [0; 3];
        let mut count = 0;
        for (slot, part) in parts.iter_mut().zip(text.split('.')) {
            *slot = part.parse().ok()?;
            count += 1;
        }
        (count >= 2 && text.split('.').count() == count).then_some(Self(parts))
    }
}

impl std::fmt::Display for RustVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [major, minor, patch] = self.0;
        write!(f, "{major}.{minor}.{patch}")
    }
}

/// One package of the graph and the version it declares (`None`: it declares none).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Declared {
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) rust_version: Option<RustVersion>,
    pub(crate) member: bool,
}

/// The packages of `cargo metadata --format-version 1` output that `built` names (as
/// `(name, version)`), members marked.
///
/// `built` comes from `cargo tree` (see [`tree_packages`]): cargo metadata's `packages`, and
/// even its `resolve.nodes`, also list optional dependencies that no enabled feature turns on.
pub(crate) fn packages(
    metadata: &str,
    built: &[(String, String)],
) -> Result<Vec<Declared>, String> {
    let root = Json::parse(metadata)?;
    let members: Vec<&str> = root
        .get("workspace_members")
        .and_then(Json::as_array)
        .ok_or("cargo metadata: no workspace_members")?
        .iter()
        .filter_map(Json::as_str)
        .collect();
    let mut out = Vec::new();
    for package in root
        .get("packages")
        .and_then(Json::as_array)
        .ok_or("cargo metadata: no packages")?
    {
        let field = |key: &str| package.get(key).and_then(Json::as_str);
        let name = field("name").ok_or("cargo metadata: a package without a name")?;
        let id = field("id").unwrap_or_default();
        let version = field("version").unwrap_or_default();
        if !built.iter().any(|(n, v)| n == name && v == version) {
            continue;
        }
        let rust_version = match field("rust_version") {
            Some(text) => Some(
                RustVersion::parse(text)
                    .ok_or_else(|| format!("{name}: unreadable rust-version {text:?}"))?,
            ),
            None => None,
        };
        out.push(Declared {
            name: name.to_owned(),
            version: version.to_owned(),
            rust_version,
            member: members.contains(&id),
        });
    }
    Ok(out)
}

/// The `(name, version)` pairs of `cargo tree --prefix none --format "{p}"` output: lines
/// such as `time v0.3.55`, `time v0.3.55 (*)` or `sitebucket v0.1.0 (/path)`.
pub(crate) fn tree_packages(tree: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = tree
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let name = words.next()?;
            let version = words.next()?.strip_prefix('v')?;
            Some((name.to_owned(), version.to_owned()))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Lines of the report, and whether every member states enough.
pub(crate) fn check(packages: &[Declared]) -> (Vec<String>, bool) {
    let mut lines = Vec::new();
    let mut deps: Vec<&Declared> = packages
        .iter()
        .filter(|p| !p.member && p.rust_version.is_some())
        .collect();
    deps.sort_by(|a, b| {
        b.rust_version
            .cmp(&a.rust_version)
            .then(a.name.cmp(&b.name))
    });
    let Some(needed) = deps.first().and_then(|p| p.rust_version) else {
        lines.push("no dependency declares a rust-version".into());
        return (lines, true);
    };
    let top: Vec<String> = deps
        .iter()
        .take_while(|p| p.rust_version == Some(needed))
        .map(|p| format!("{} {}", p.name, p.version))
        .collect();
    lines.push(format!(
        "dependencies need Rust {needed} at least ({})",
        top.join(", ")
    ));
    let mut ok = true;
    for member in packages.iter().filter(|p| p.member) {
        match member.rust_version {
            Some(stated) if stated >= needed => {}
            Some(stated) => {
                ok = false;
                lines.push(format!(
                    "{} states rust-version {stated}, below {needed}",
                    member.name
                ));
            }
            None => {
                ok = false;
                lines.push(format!("{} states no rust-version", member.name));
            }
        }
    }
    (lines, ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        let v = |s| RustVersion::parse(s).unwrap();
        assert!(v("1.88") > v("1.85.1"));
        assert!(v("1.100") > v("1.99.9"));
        assert_eq!(v("1.88"), v("1.88.0"));
        assert_eq!(RustVersion::parse("1"), None);
        assert_eq!(RustVersion::parse("1.x"), None);
        assert_eq!(RustVersion::parse("1.2.3.4"), None);
    }

    const METADATA: &str = r#"{"packages":[
        {"name":"app","version":"0.1.0","id":"path+file:///w#app@0.1.0","rust_version":"1.85",
         "dependencies":[{"name":"dep","rust_version":"9.9"}]},
        {"name":"dep","version":"2.0.0","id":"registry+x#dep@2.0.0","rust_version":"1.88.0"},
        {"name":"old","version":"1.0.0","id":"registry+x#old@1.0.0","rust_version":null},
        {"name":"unused","version":"1.0.0","id":"registry+x#unused@1.0.0","rust_version":"1.99"}
      ],"workspace_members":["path+file:///w#app@0.1.0"],
      "resolve":null}"#;

    /// `cargo tree` of the same workspace: `unused` is not built.
    const TREE: &str = "app v0.1.0 (/w)\ndep v2.0.0\nold v1.0.0\ndep v2.0.0 (*)\n\n";

    #[test]
    fn a_member_below_a_dependency_fails_and_names_both() {
        let packages = packages(METADATA, &tree_packages(TREE)).unwrap();
        // `unused` is in the lock file but no feature builds it.
        assert_eq!(packages.len(), 3);
        assert!(packages[0].member && !packages[1].member);
        assert_eq!(packages[2].rust_version, None);
        let (lines, ok) = check(&packages);
        assert!(!ok);
        assert_eq!(
            lines[0],
            "dependencies need Rust 1.88.0 at least (dep 2.0.0)"
        );
        assert_eq!(lines[1], "app states rust-version 1.85.0, below 1.88.0");
    }

    #[test]
    fn a_member_at_the_dependency_maximum_passes() {
        let packages = packages(
            &METADATA.replace("\"1.85\"", "\"1.88\""),
            &tree_packages(TREE),
        )
        .unwrap();
        let (lines, ok) = check(&packages);
        assert!(ok, "{lines:?}");
        assert_eq!(lines.len(), 1);
    }
}
