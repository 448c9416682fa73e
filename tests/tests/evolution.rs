//! How a service may evolve (the rules in `rpc_core::schema`'s `evolution` module), each rule
//! checked with a real server of one version and a client of another.

use std::time::Duration;

use rpc_core::{ClientOptions, RpcError, Server, ServerHandle, Service};

async fn serve(service: impl Service) -> (ServerHandle, String) {
    let handle = Server::new()
        .start(service, &["tcp://127.0.0.1:0"])
        .await
        .unwrap();
    let address = handle.local_address();
    (handle, address)
}

fn strict() -> ClientOptions {
    ClientOptions::default().strict_schema(true)
}

/// Version 1 of a key-value service.
mod v1 {
    #[rpc_core::service]
    pub trait Store {
        async fn get(&self, key: String) -> Option<String>;
        async fn put(&self, key: String, value: String) -> bool;
    }

    pub struct Impl;
    impl Store for Impl {
        async fn get(&self, key: String) -> Option<String> {
            Some(format!("v1:{key}"))
        }
        async fn put(&self, _key: String, _value: String) -> bool {
            true
        }
    }
}

/// Version 2: methods in another order, arguments renamed, docs, a deprecation and a timeout
/// added, a method added, and `put` renamed in Rust while keeping its wire name.
mod v2 {
    #[rpc_core::service]
    pub trait Store {
        /// Counts the keys.
        async fn count(&self) -> u64;
        /// Stores a value.
        #[rpc(name = "put", timeout = "5s")]
        async fn insert(&self, name: String, contents: String) -> bool;
        #[deprecated(note = "use a newer call")]
        #[rpc(idempotent)]
        async fn get(&self, name: String) -> Option<String>;
    }

    pub struct Impl;
    impl Store for Impl {
        async fn count(&self) -> u64 {
            42
        }
        async fn insert(&self, _name: String, _contents: String) -> bool {
            true
        }
        async fn get(&self, name: String) -> Option<String> {
            Some(format!("v2:{name}"))
        }
    }
}

/// Version 3: `get` removed, `put` changed.
mod v3 {
    #[rpc_core::service]
    pub trait Store {
        async fn put(&self, key: String, value: Vec<u8>) -> bool;
        async fn count(&self) -> u64;
    }

    pub struct Impl;
    impl Store for Impl {
        async fn put(&self, _key: String, _value: Vec<u8>) -> bool {
            true
        }
        async fn count(&self) -> u64 {
            3
        }
    }
}

#[tokio::test]
async fn a_server_that_gained_methods_keeps_serving_old_clients() {
    let (handle, address) = serve(v2::StoreServer::new(v2::Impl)).await;
    let old = v1::StoreClient::connect(&address).await.unwrap();
    assert_eq!(old.get("a".into()).await.unwrap(), Some("v2:a".into()));
    assert!(old.put("a".into(), "b".into()).await.unwrap());
    handle.shutdown().await;
}

#[tokio::test]
async fn a_new_client_works_with_an_old_server_for_the_methods_both_know() {
    let (handle, address) = serve(v1::StoreServer::new(v1::Impl)).await;
    let new = v2::StoreClient::connect(&address).await.unwrap();
    #[allow(deprecated)]
    let got = new.get("k".into()).await.unwrap();
    assert_eq!(got, Some("v1:k".into()));
    assert!(new.insert("k".into(), "v".into()).await.unwrap());
    // The method the old server lacks fails at once, without being sent.
    let error = new.count().await.unwrap_err();
    assert!(
        matches!(&error, RpcError::IncompatibleMethod { method, reason }
            if method == "count" && reason.contains("the server has no such method")),
        "{error:?}"
    );
    assert_eq!(new.client().pending_calls(), 0);
    // And the connection goes on.
    assert!(new.insert("k".into(), "v".into()).await.unwrap());
    handle.shutdown().await;
}

#[tokio::test]
async fn reordering_renaming_arguments_docs_deprecation_and_timeouts_change_nothing_on_the_wire() {
    // v1 and v2 differ in all of these, and in one added method: a strict client sees only
    // the added method.
    let (handle, address) = serve(v2::StoreServer::new(v2::Impl)).await;
    let error = v1::StoreClient::connect_with(&address, strict())
        .await
        .unwrap_err();
    match error {
        RpcError::HandshakeMismatch { differences, .. } => assert_eq!(
            differences,
            ["method 'count' is missing on the client"],
            "only the added method may differ"
        ),
        other => panic!("expected HandshakeMismatch, got {other:?}"),
    }
    handle.shutdown().await;
}

#[tokio::test]
async fn removing_or_changing_a_method_breaks_only_its_callers() {
    let (handle, address) = serve(v3::StoreServer::new(v3::Impl)).await;
    let old = v1::StoreClient::connect(&address).await.unwrap();
    let removed = old.get("k".into()).await.unwrap_err();
    assert!(
        matches!(&removed, RpcError::IncompatibleMethod { method, reason }
            if method == "get" && reason == "the server has no such method"),
        "{removed:?}"
    );
    let changed = old.put("k".into(), "v".into()).await.unwrap_err();
    assert!(
        matches!(&changed, RpcError::IncompatibleMethod { method, reason }
            if method == "put" && reason.contains("argument 'value': client string, server bytes")),
        "{changed:?}"
    );
    // A strict client lists every difference.
    let strict_error = v1::StoreClient::connect_with(&address, strict())
        .await
        .unwrap_err();
    match strict_error {
        RpcError::HandshakeMismatch { differences, .. } => {
            for expected in [
                "method 'get': the server has no such method",
                "method 'put': argument 'value': client string, server bytes",
                "method 'count' is missing on the client",
            ] {
                assert!(
                    differences.iter().any(|d| d == expected),
                    "{expected:?} not in {differences:?}"
                );
            }
        }
        other => panic!("expected HandshakeMismatch, got {other:?}"),
    }
    handle.shutdown().await;
}

/// Two versions whose methods share an explicit id under different wire names.
mod id_a {
    #[rpc_core::service]
    pub trait Ids {
        #[rpc(id = 7)]
        async fn first(&self) -> u8;
    }
    pub struct Impl;
    impl Ids for Impl {
        async fn first(&self) -> u8 {
            1
        }
    }
}

mod id_b {
    #[rpc_core::service]
    pub trait Ids {
        #[rpc(id = 7)]
        async fn second(&self) -> u8;
        #[rpc(id = 8)]
        async fn first(&self) -> u8;
    }
    pub struct Impl;
    impl Ids for Impl {
        async fn second(&self) -> u8 {
            2
        }
        async fn first(&self) -> u8 {
            1
        }
    }
}

#[tokio::test]
async fn a_method_is_matched_by_id_and_wire_name_together() {
    let (handle, address) = serve(id_b::IdsServer::new(id_b::Impl)).await;
    let client = id_a::IdsClient::connect(&address).await.unwrap();
    let error = client.first().await.unwrap_err();
    assert!(
        matches!(&error, RpcError::IncompatibleMethod { reason, .. }
            if reason == "the server's method with id 7 is 'second'"),
        "{error:?}"
    );
    handle.shutdown().await;
    // The other way round: the name exists on the server under another id.
    let (handle, address) = serve(id_a::IdsServer::new(id_a::Impl)).await;
    let client = id_b::IdsClient::connect(&address).await.unwrap();
    let error = client.first().await.unwrap_err();
    assert!(
        matches!(&error, RpcError::IncompatibleMethod { reason, .. }
            if reason == "its id is 8 on the client but 7 on the server"),
        "{error:?}"
    );
    handle.shutdown().await;
}

mod other_service {
    #[rpc_core::service]
    pub trait Inventory {
        async fn get(&self, key: String) -> Option<String>;
    }
}

#[tokio::test]
async fn another_service_name_is_refused_at_connect() {
    let (handle, address) = serve(v1::StoreServer::new(v1::Impl)).await;
    let error = other_service::InventoryClient::connect(&address)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, RpcError::UnknownService { service, available }
            if service == "Inventory" && available == &["Store"]),
        "{error:?}"
    );
    handle.shutdown().await;
}

#[tokio::test]
async fn a_method_timeout_is_the_default_deadline_and_an_explicit_one_wins() {
    mod slow {
        #[rpc_core::service]
        pub trait Slow {
            #[rpc(timeout = "150ms")]
            async fn nap(&self, ms: u64);
        }
        pub struct Impl;
        impl Slow for Impl {
            async fn nap(&self, ms: u64) {
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            }
        }
    }
    let (handle, address) = serve(slow::SlowServer::new(slow::Impl)).await;
    let client = slow::SlowClient::connect(&address).await.unwrap();
    let error = client.nap(5_000).await.unwrap_err();
    assert!(
        matches!(&error, RpcError::DeadlineExceeded { method, timeout }
            if method == "nap" && *timeout == Duration::from_millis(150)),
        "{error:?}"
    );
    let patient = client.with_timeout(Some(Duration::from_secs(20)));
    patient.nap(300).await.unwrap();
    assert_eq!(slow::SlowClient::schema().methods[0].timeout_ms, Some(150));
    handle.shutdown().await;
}

#[test]
fn the_schema_records_ids_names_attributes_and_docs() {
    let schema = v2::StoreClient::schema();
    let insert = schema
        .methods
        .iter()
        .find(|m| m.rust_name == "insert")
        .unwrap();
    assert_eq!(insert.name, "put");
    assert_eq!(insert.id, v1::StoreClient::schema().methods[1].id);
    assert_eq!(insert.timeout_ms, Some(5_000));
    assert_eq!(insert.docs, "Stores a value.");
    let get = schema.methods.iter().find(|m| m.name == "get").unwrap();
    assert!(get.idempotent);
    assert_eq!(get.deprecated.as_deref(), Some("use a newer call"));
    let json = schema.to_json();
    let back = rpc_core::ServiceSchema::from_json(&json).unwrap();
    assert_eq!(&back, schema);
}
