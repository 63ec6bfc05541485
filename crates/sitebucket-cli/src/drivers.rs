//! The drivers `--driver` names, in one table: adding a driver is one variant of
//! [`DriverName`] and one arm of [`with_driver`].

use clap::ValueEnum;
use sitebucket_thread::Driver;

/// `--driver`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum DriverName {
    /// Blocking std sockets on a thread (sitebucket-std).
    Thread,
    /// A mio event loop (sitebucket-mio).
    Mio,
    /// smol async I/O (sitebucket-smol).
    Smol,
    /// A tokio runtime of the driver's own (sitebucket-tokio).
    Tokio,
}

/// Work to do with a driver, whichever it is: `with_driver` hands it the one named.
pub(crate) trait WithDriver {
    /// What the work returns.
    type Output;

    /// Does the work with `driver`.
    fn with<D: Driver>(self, driver: D) -> Self::Output;
}

/// Runs `work` with the driver `name` names.
pub(crate) fn with_driver<W: WithDriver>(name: DriverName, work: W) -> W::Output {
    match name {
        DriverName::Thread => work.with(sitebucket_std::StdDriver::new()),
        DriverName::Mio => work.with(sitebucket_mio::MioDriver::new()),
        DriverName::Smol => work.with(sitebucket_smol::SmolDriver::new()),
        DriverName::Tokio => work.with(sitebucket_tokio::TokioDriver::new()),
    }
}

impl DriverName {
    /// The name as `--driver` takes it.
    pub(crate) fn label(self) -> String {
        self.to_possible_value()
            .map_or_else(|| format!("{self:?}"), |v| v.get_name().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Name;

    impl WithDriver for Name {
        type Output = &'static str;
        fn with<D: Driver>(self, driver: D) -> &'static str {
            driver.name()
        }
    }

    /// Each `--driver` name runs a driver of its own, whose `Driver::name` is that name.
    #[test]
    fn every_name_maps_to_its_own_driver() {
        let names: Vec<&str> = DriverName::value_variants()
            .iter()
            .map(|name| with_driver(*name, Name))
            .collect();
        assert_eq!(names, ["thread", "mio", "smol", "tokio"]);
        for name in DriverName::value_variants() {
            assert_eq!(with_driver(*name, Name), name.label());
        }
    }
}
