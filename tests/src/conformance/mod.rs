//! The transport conformance suite, exported: every body runs unchanged on every transport,
//! built-in or a user's own.
//!
//! - `calls.rs`: calls, limits, failures and raw protocol abuse ([`call_conformance!`]), with
//!   `raw_calls.rs`: call ids used twice, and calls the server refuses as it stops.
//! - `streams.rs`: server, client and bidirectional streams ([`stream_conformance!`]).
//! - `blocking.rs`: the blocking client from plain threads ([`blocking_conformance!`]).
//!
//! Each macro makes one `#[test]` per body for each `name => transport` pair, in a module
//! `name` (so the transport expression names items by full path, `crate::...`). A transport of your own (registered with `rpc_transport::register`) runs them as
//! [`Transport::Custom`](crate::Transport::Custom):
//!
//! ```ignore
//! static MINE: rpc_tests::CustomTransport = rpc_tests::CustomTransport {
//!     register: my_transport::register_once,
//!     fresh_address: |_dir| format!("mine://{}", rpc_tests::unique_name("probe")),
//!     server: |server| server,
//!     client: |options| options,
//! };
//! rpc_tests::call_conformance! { mine => rpc_tests::Transport::Custom(&crate::MINE) }
//! rpc_tests::stream_conformance! { mine => rpc_tests::Transport::Custom(&crate::MINE) }
//! rpc_tests::blocking_conformance! { mine => rpc_tests::Transport::Custom(&crate::MINE) }
//! ```
//!
//! `tests/tests/custom_transport.rs` does exactly that for a transport over TCP defined there.

pub mod blocking;
pub mod calls;
pub mod raw_calls;
pub mod streams;

use crate::Transport;

/// mq tests under a uid of their own: POSIX message queues count against `RLIMIT_MSGQUEUE`
/// per real uid (800 KiB by default; raising it needs `CAP_SYS_RESOURCE`), shared by every
/// process of that user, and other processes of ours may hold most of it. So when we are root
/// each mq test runs in a child of the test binary under an unused uid, whose budget is
/// untouched (`own_uid.rs`, shared with rpc-transport's tests).
#[doc(hidden)]
#[path = "../../../rpc-transport/src/mq/tests/own_uid.rs"]
pub mod mq_own_uid;

/// Whether the test `name` in `module` (as `module_path!()` gives it) on `transport` ran in a
/// child of its own (see [`mq_own_uid`]) and passed there; `false` when the caller runs it.
#[doc(hidden)]
pub fn delegated(transport: Transport, module: &str, name: &str) -> bool {
    transport == Transport::Mq && mq_own_uid::delegated(&mq_own_uid::test_path(module, name))
}

/// Runs an async test body on a multi-threaded runtime of two workers, as the suites do.
#[doc(hidden)]
pub fn run<F: std::future::Future<Output = ()>>(body: F) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a test runtime")
        .block_on(body)
}

/// Instantiates the call bodies (`calls.rs`) for each `name => transport`. A transport whose
/// every connection has a server of its own (as `spawn:` does) uses the `@one_connection_each`
/// form, which leaves out the bodies that need two connections on one server (or settings of
/// the test's own: a `spawn:` child serves with its defaults).
#[macro_export]
macro_rules! call_conformance {
    (@one_connection_each $($name:ident => $transport:expr),* $(,)?) => {
        $(mod $name {
            $crate::call_conformance!(@every $transport);
        })*
    };
    (@every $transport:expr) => {
        $crate::call_conformance!(@tests $transport;
            one_call,
            thousand_concurrent_calls_on_one_connection,
            more_calls_than_the_server_admits_wait_their_turn,
            sixty_four_clients_at_once,
            payload_at_the_frame_limit,
            oversized_raw_frame_fails_only_its_connection,
            garbage_frame_fails_only_its_connection,
            server_gone_mid_call_fails_pending_calls,
            application_error_round_trip,
            unknown_method_in_raw_frame,
            a_call_id_already_in_flight_is_refused,
            a_call_id_computing_in_place_is_refused,
            a_call_id_freed_by_a_cancel_may_be_used_again,
            a_call_cancelled_while_computing_in_place_is_not_answered,
            undecodable_arguments_are_a_bad_request,
            deadline_cancels_the_handler,
            handler_panic_is_reported_and_serving_goes_on,
            metadata_reaches_the_handler,
            calls_in_flight_are_limited_by_name,
            graceful_shutdown_finishes_running_calls,
        );
    };
    (@tests $transport:expr; $($test:ident),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                if $crate::conformance::delegated($transport, module_path!(), stringify!($test)) {
                    return;
                }
                $crate::conformance::run($crate::conformance::calls::$test($transport));
            }
        )*
    };
    ($($name:ident => $transport:expr),* $(,)?) => {
        $(mod $name {
            $crate::call_conformance!(@every $transport);
            $crate::call_conformance!(@tests $transport;
                connections_are_limited_by_name,
                two_services_share_one_listener,
                a_call_waiting_for_memory_is_refused_when_the_server_stops,
                a_stream_item_waiting_for_memory_is_delivered_when_the_server_stops,
            );
        })*
    };
}

/// Instantiates the streaming bodies (`streams.rs`) for each `name => transport`.
#[macro_export]
macro_rules! stream_conformance {
    ($($name:ident => $transport:expr),* $(,)?) => {
        $(mod $name {
            $crate::stream_conformance!(@tests $transport;
                server_stream_arrives_whole_and_in_order,
                client_stream_is_summed,
                bidirectional_stream_answers_as_it_goes,
                a_stream_ends_with_the_producers_error,
                dropping_the_stream_cancels_the_producer,
                the_deadline_covers_the_whole_stream,
                a_slow_consumer_holds_the_producer_back,
                blocking_client_streams,
            );
        })*
    };
    (@tests $transport:expr; $($test:ident),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                if $crate::conformance::delegated($transport, module_path!(), stringify!($test)) {
                    return;
                }
                $crate::conformance::run($crate::conformance::streams::$test($transport));
            }
        )*
    };
}

/// Instantiates the blocking client's bodies (`blocking.rs`) for each `name => transport`.
#[macro_export]
macro_rules! blocking_conformance {
    ($($name:ident => $transport:expr),* $(,)?) => {
        $(mod $name {
            $crate::blocking_conformance!(@tests $transport;
                one_call,
                threads_share_one_client,
                large_messages_cross,
                payload_at_the_frame_limit,
                deadline_is_typed_and_the_connection_survives,
                server_gone_mid_call,
                unknown_method_and_panics_are_typed,
            );
        })*
    };
    (@tests $transport:expr; $($test:ident),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                $crate::conformance::blocking::$test($transport);
            }
        )*
    };
}
