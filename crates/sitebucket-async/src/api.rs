//! [`driver_api!`](crate::driver_api): the entry points every async driver crate exposes,
//! defined once for a given [`Runtime`](crate::Runtime).

/// What the driver macro's items name, reachable from the driver crate as `$crate::…`.
#[doc(hidden)]
pub mod __private {
    pub use sitebucket_proto::control::{ControlCall, ControlError, ControlResponse};
    pub use sitebucket_proto::Outcome;
    pub use sitebucket_proto::{Parser, SiteStream};
    pub use sitebucket_thread::{Resolver, RunState};
}

/// Defines, in a driver crate, the async entry points of the runtime `$runtime` (a type
/// implementing [`Runtime`](crate::Runtime)) under the names every driver shares: `drive` /
/// `drive_with`, `run_control` / `run_control_with`, the `Messages` stream type and its
/// `messages` / `messages_with` constructors. `$context` is a sentence of documentation
/// saying where the futures may be polled.
#[doc(hidden)]
#[macro_export]
macro_rules! driver_api {
    ($runtime:ident, $context:literal) => {
        /// Runs `stream` until it finishes, handing each message to `parser`: the shared loop
        /// of `sitebucket_async::drive_with`.
        ///
        /// The loop carries out every action of the core until it says to wait, publishes
        /// the status to `control`, then waits for whichever comes first of a stop request
        /// ([`RunState::request_stop`](sitebucket_thread::RunState::request_stop)), the
        /// connection attempt, bytes from the socket, room to write, or the core's deadline.
        /// On a stop it ends with `Outcome::Stopped`. It makes no protocol decision:
        /// timeouts, retries and backoff are all the core's.
        ///
        /// Reads go into 64 KiB blocks (one per thread, shared by every stream polled on it)
        /// handed to the core without a copy. While bytes keep arriving it yields to the
        /// executor after every 16 reads (at most 1 MiB) or 2 ms of work, whichever comes
        /// first, so the executor's other tasks, its timers and a cancellation get their
        /// turn (a cooperative budget alone would count a 64 KiB read, a millisecond of
        /// framing and parsing, as one unit); it yields after handing the read's messages
        /// out, never holding a read across the yield. When the core's deadline comes while
        /// no bytes are reported, it first reads the socket itself, so bytes or a close
        /// already there reach the core before its stall timeout.
        ///
        #[doc = $context]
        /// The future is `Send`; dropping it closes the socket at once and abandons a
        /// lookup in progress. Host names go to the system resolver: see [`drive_with`].
        pub async fn drive(
            stream: &mut $crate::__private::SiteStream,
            parser: &mut dyn $crate::__private::Parser,
            control: &$crate::__private::RunState,
        ) -> $crate::__private::Outcome {
            drive_with(
                stream,
                parser,
                control,
                &$crate::__private::Resolver::system(),
            )
            .await
        }

        /// [`drive`] with host names looked up by `resolver`, on a lookup thread whose
        /// answer the loop awaits, raced against a stop and the core's deadline: a slow
        /// lookup blocks neither the executor nor a stop, and one abandoned ends on its own
        /// with its answer dropped. IP literals need no lookup; the addresses are tried in
        /// turn.
        pub async fn drive_with(
            stream: &mut $crate::__private::SiteStream,
            parser: &mut dyn $crate::__private::Parser,
            control: &$crate::__private::RunState,
            resolver: &$crate::__private::Resolver,
        ) -> $crate::__private::Outcome {
            $crate::drive_with::<$runtime>(stream, parser, control, resolver).await
        }

        /// Carries out `call` (add or remove users, info) on a new socket of its own and
        /// returns its answer; every wait (connect, write, read) races the call's deadline.
        /// It makes no protocol decision; the call says what to do.
        ///
        #[doc = $context]
        /// The future is `Send`; dropping it closes the socket. Host names go to the system
        /// resolver: see [`run_control_with`].
        pub async fn run_control(
            call: $crate::__private::ControlCall,
        ) -> Result<$crate::__private::ControlResponse, $crate::__private::ControlError> {
            run_control_with(call, &$crate::__private::Resolver::system()).await
        }

        /// [`run_control`] with host names looked up by `resolver`, on a lookup thread of
        /// its own whose answer is awaited no longer than the call's deadline (a control
        /// call has no stop of its own: its deadline, or dropping the future, bounds it).
        pub async fn run_control_with(
            call: $crate::__private::ControlCall,
            resolver: &$crate::__private::Resolver,
        ) -> Result<$crate::__private::ControlResponse, $crate::__private::ControlError> {
            $crate::run_control_with::<$runtime>(call, resolver).await
        }

        /// A stream's messages and connection events as a `futures_core::Stream` of
        /// `StreamItem`s, in order, then `StreamItem::Finished` with the outcome: the shared
        /// `sitebucket_async::Messages` on this crate's runtime. Made by [`messages`]; it is
        /// `Send` and `Unpin`.
        pub type Messages = $crate::Messages<$runtime>;

        /// `stream`'s messages and connection events as a [`Messages`] stream, driven by
        /// whoever polls it (nothing runs in the background; nothing happens until the first
        /// poll).
        ///
        #[doc = $context]
        /// Host names go to the system resolver: see [`messages_with`].
        pub fn messages(stream: $crate::__private::SiteStream) -> Messages {
            Messages::new(stream)
        }

        /// [`messages`], looking host names up with `resolver`.
        pub fn messages_with(
            stream: $crate::__private::SiteStream,
            resolver: $crate::__private::Resolver,
        ) -> Messages {
            Messages::with_resolver(stream, resolver)
        }
    };
}
