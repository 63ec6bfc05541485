//! A tiny `--name value` argument reader for the bench binaries.

use std::str::FromStr;

/// The process's arguments, after the program name.
#[derive(Debug, Clone, Default)]
pub struct Args(Vec<String>);

impl Args {
    /// The arguments of this process.
    pub fn from_env() -> Self {
        Args(std::env::args().skip(1).collect())
    }

    /// These arguments (for tests).
    pub fn from_vec(args: Vec<String>) -> Self {
        Args(args)
    }

    /// Whether `--name` is present.
    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|a| a == name)
    }

    /// The value after `--name`, if any.
    pub fn value(&self, name: &str) -> Option<&str> {
        let at = self.0.iter().position(|a| a == name)?;
        self.0.get(at + 1).map(String::as_str)
    }

    /// The value after `--name` parsed, or `default`; exits with a message if it does not
    /// parse.
    pub fn get<T: FromStr>(&self, name: &str, default: T) -> T {
        match self.value(name) {
            None => default,
            Some(v) => v.parse().unwrap_or_else(|_| {
                eprintln!("bad value {v:?} for {name}");
                std::process::exit(2)
            }),
        }
    }

    /// The first argument (a mode), if it is not an option.
    pub fn mode(&self) -> Option<&str> {
        self.0
            .first()
            .filter(|a| !a.starts_with("--"))
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_modes_flags_and_values() {
        let args = Args::from_vec(
            ["firehose", "--bytes", "123", "--tls"]
                .map(String::from)
                .to_vec(),
        );
        assert_eq!(args.mode(), Some("firehose"));
        assert!(args.has("--tls"));
        assert!(!args.has("--quick"));
        assert_eq!(args.get("--bytes", 0u64), 123);
        assert_eq!(args.get("--seed", 7u64), 7);
        assert_eq!(args.value("--tls"), None);
        assert_eq!(Args::from_vec(vec!["--x".into()]).mode(), None);
    }
}
