//! The cross-driver end-to-end suite (`sitebucket-e2e`), run with the smol driver: each
//! stream on its own thread under `smol::block_on`.

sitebucket_e2e::suite!(sitebucket_smol::SmolDriver::new());
