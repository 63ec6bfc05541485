//! The cross-driver end-to-end suite (`sitebucket-e2e`), run with the mio driver: every
//! stream of a test on one event-loop thread.

sitebucket_e2e::suite!(sitebucket_mio::MioDriver::new());
