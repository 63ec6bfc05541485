//! What can go wrong when the monitor changes its streams.

use std::fmt;
use std::io;

use sitebucket_proto::control::ControlError;
use sitebucket_proto::ConfigError;

/// Why the monitor could not do what it was asked.
#[derive(Debug)]
#[non_exhaustive]
pub enum MonitorError {
    /// The template with a stream's follow list is not a valid config.
    Config(ConfigError),
    /// The driver could not start the stream.
    Spawn(io::Error),
    /// A control request failed and no other way was left (the users stay where they were).
    Control(ControlError),
}

impl fmt::Display for MonitorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MonitorError::Config(e) => write!(f, "cannot configure a monitored stream: {e}"),
            MonitorError::Spawn(e) => write!(f, "cannot start a monitored stream: {e}"),
            MonitorError::Control(e) => write!(f, "cannot change a monitored stream: {e}"),
        }
    }
}

impl std::error::Error for MonitorError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            MonitorError::Config(e) => Some(e),
            MonitorError::Spawn(e) => Some(e),
            MonitorError::Control(e) => Some(e),
        }
    }
}
