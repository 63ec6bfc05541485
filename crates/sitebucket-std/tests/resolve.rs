//! Host-name resolution off the stream's thread (see `sitebucket_e2e::resolve`).
sitebucket_e2e::resolution_suite!(sitebucket_std::StdDriver::with_resolver);
