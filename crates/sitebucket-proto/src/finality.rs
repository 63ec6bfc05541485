//! Which ends of a run no retry can fix: the one place a supervisor (a monitor, a fleet
//! worker) learns whether to start a finished stream again or set it aside.

use crate::stream::Outcome;

impl Outcome {
    /// Whether no retry can fix this end, so a supervisor sets the stream aside instead of
    /// starting it again: [`Outcome::Fatal`] (a status such as 401, 403 or 404) and
    /// [`Outcome::Revoked`] (a `disconnect` message with code 6 or 7). Every other end —
    /// a stop, giving up after retries, a configuration refused — is not final.
    pub fn is_final(&self) -> bool {
        matches!(self, Outcome::Fatal { .. } | Outcome::Revoked { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only a status no retry fixes and a revoked stream are final.
    #[test]
    fn only_fatal_and_revoked_ends_are_final() {
        let fatal = Outcome::Fatal {
            status: 401,
            reason: "Unauthorized".into(),
        };
        let revoked = Outcome::Revoked {
            code: 6,
            reason: "token revoked".into(),
        };
        assert!(fatal.is_final());
        assert!(revoked.is_final());
        assert!(!Outcome::Stopped.is_final());
        assert!(!Outcome::InvalidConfig("bad".into()).is_final());
    }
}
