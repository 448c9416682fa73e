// The request and response enums and the client's `tower::Service` impl: borrowed arguments
// owned, `#[cfg]`-gated and streaming methods without variants, names a user's trait may
// share with tower's (`call`, `poll_ready`) or with the generated items, an argument type
// without `Clone` (its request is then not `Clone`, and all else still compiles), deprecated
// and non-snake-case methods, and a service with no variant at all; in a crate that denies
// warnings and missing docs.
#![deny(warnings, missing_docs)]
//! A crate of services.

use rpc_core::tower::{IdempotentRequest, Service};
use rpc_core::Streaming;

/// A user's own types named like tower's.
pub struct Request;
/// Likewise.
pub struct Response;

/// A key-value store.
#[rpc_core::service]
pub trait Store {
    /// Reads a value.
    #[rpc(idempotent)]
    async fn get(&self, key: &str) -> Option<Vec<u8>>;
    /// Writes a value.
    #[rpc(name = "put_bytes")]
    async fn put(&self, key: &str, value: &[u8], tags: &[u32], pair: &(u8, u16)) -> bool;
    /// Named like tower's method.
    async fn call(&self, request: String) -> u8;
    /// Likewise.
    async fn poll_ready(&self) -> u8;
    /// Never compiled in.
    #[cfg(any())]
    async fn never(&self) -> u8;
    /// Always compiled in.
    #[cfg(all())]
    async fn always(&self, blob: Vec<u8>);
    /// Old.
    #[deprecated(note = "use get")]
    async fn fetch(&self, key: String) -> Option<Vec<u8>>;
    /// Non-snake-case, as a legacy wire name needs.
    #[allow(non_snake_case)]
    async fn GetItem(&self, itemId: u32) -> u32;
    /// Streams: no variant.
    async fn scan(&self, prefix: String) -> Streaming<String>;
}

/// A type that crosses the wire but cannot be cloned.
#[derive(serde::Serialize, serde::Deserialize, Debug)]
pub struct Unique(pub u64);

/// A service whose request cannot be cloned.
#[rpc_core::service]
pub trait Tokens {
    /// Spends a token.
    async fn spend(&self, token: Unique) -> bool;
}

/// A service with only a streaming method: empty enums.
#[rpc_core::service]
pub trait Feed {
    /// Streams items.
    async fn follow(&self) -> Streaming<u64>;
}

fn is_service<S: Service<R, Error = rpc_core::RpcError>, R>() {}
fn is_clone<T: Clone + std::fmt::Debug>() {}

#[allow(deprecated)]
fn main() {
    is_service::<StoreClient, StoreRequest>();
    is_service::<TokensClient, TokensRequest>();
    is_service::<FeedClient, FeedRequest>();
    is_clone::<StoreRequest>();
    is_clone::<StoreResponse>();
    is_clone::<TokensResponse>();

    let requests = [
        StoreRequest::Get { key: "k".to_owned() },
        StoreRequest::Put {
            key: String::new(),
            value: vec![1],
            tags: vec![2],
            pair: (3, 4),
        },
        StoreRequest::Call { request: String::new() },
        StoreRequest::PollReady {},
        StoreRequest::Always { blob: Vec::new() },
        StoreRequest::Fetch { key: String::new() },
        StoreRequest::GetItem { itemId: 1 },
    ];
    let names: Vec<&str> = requests.iter().map(StoreRequest::method_name).collect();
    assert_eq!(
        names,
        ["get", "put_bytes", "call", "poll_ready", "always", "fetch", "GetItem"]
    );
    let idempotent: Vec<bool> = requests.iter().map(IdempotentRequest::is_idempotent).collect();
    assert_eq!(idempotent, [true, false, false, false, false, false, false]);
    // Every variant, and no other (no `Never`, no `Scan`).
    for request in requests.clone() {
        match request {
            StoreRequest::Get { key: _ }
            | StoreRequest::Put { .. }
            | StoreRequest::Call { .. }
            | StoreRequest::PollReady {}
            | StoreRequest::Always { .. }
            | StoreRequest::Fetch { .. }
            | StoreRequest::GetItem { .. } => {}
        }
    }
    let response = StoreResponse::Get(Some(vec![1]));
    match response.clone() {
        StoreResponse::Get(_)
        | StoreResponse::Put(_)
        | StoreResponse::Call(_)
        | StoreResponse::PollReady(_)
        | StoreResponse::Always(())
        | StoreResponse::Fetch(_)
        | StoreResponse::GetItem(_) => {}
    }
    assert_eq!(format!("{response:?}"), "Get(Some([1]))");
    let tokens = TokensRequest::Spend { token: Unique(1) };
    assert_eq!(format!("{tokens:?}"), "Spend { token: Unique(1) }");
    let _ = (Request, Response);
}
