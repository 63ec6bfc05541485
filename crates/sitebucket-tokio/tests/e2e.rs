//! The cross-driver end-to-end suite (`sitebucket-e2e`), run with the tokio driver twice:
//! on the current-thread runtime the driver owns, and on a multi-thread runtime passed by
//! handle.

/// A multi-thread runtime shared by the tests of [`given_multi_thread`].
fn multi_thread() -> tokio::runtime::Handle {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a multi-thread runtime")
        })
        .handle()
        .clone()
}

/// Every stream of a test on the driver's own current-thread runtime.
mod owned_current_thread {
    sitebucket_e2e::suite!(sitebucket_tokio::TokioDriver::new());
}

/// Every stream of a test on a multi-thread runtime the test passes.
mod given_multi_thread {
    sitebucket_e2e::suite!(sitebucket_tokio::TokioDriver::with_handle(
        super::multi_thread()
    ));
}
