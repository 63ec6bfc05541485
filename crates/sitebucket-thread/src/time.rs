//! Wall-clock time as the core takes it: drivers read the clock, the core never does.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch by the system clock (0 if the clock is set before 1970), the
/// wall-clock time OAuth signing takes.
pub fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The clock reads after 2020 and does not run backwards across two reads.
    #[test]
    fn unix_secs_reads_the_system_clock() {
        let a = unix_secs();
        let b = unix_secs();
        assert!(a > 1_577_836_800, "{a}");
        assert!(b >= a);
    }
}
