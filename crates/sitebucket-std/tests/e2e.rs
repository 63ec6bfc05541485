//! The cross-driver end-to-end suite (`sitebucket-e2e`), run with the std driver.

sitebucket_e2e::suite!(sitebucket_std::StdDriver::new());
