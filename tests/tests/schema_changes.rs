//! A change inside a user type that the trait's text does not show is caught by the handshake:
//! the method cannot be called (before anything is sent), the error names the method and the
//! path to the difference, other methods keep working, and a strict client refuses to connect.
//!
//! Each case defines two versions of one `Shop` service, `client` and `server`, whose traits
//! read the same and whose types differ in one way.

use std::sync::atomic::{AtomicUsize, Ordering};

use rpc_core::{ClientOptions, RpcError, Server};

/// Both versions of a `Shop` whose `Order` (and what it contains) the case defines.
macro_rules! versions {
    (client { $($client:item)* } server { $($server:item)* }) => {
        pub mod client {
            #![allow(dead_code)]
            use serde::{Deserialize, Serialize};
            $($client)*
            shop!();
        }
        pub mod server {
            #![allow(dead_code)]
            use serde::{Deserialize, Serialize};
            $($server)*
            shop!();
        }
    };
}

/// The `Shop` trait (identical text in both versions) and a server counting `put` calls.
macro_rules! shop {
    () => {
        #[rpc_core::service]
        pub trait Shop {
            async fn put(&self, order: Order) -> u64;
            async fn ping(&self) -> u32;
        }

        pub struct Counting(pub std::sync::Arc<std::sync::atomic::AtomicUsize>);

        impl Shop for Counting {
            async fn put(&self, _order: Order) -> u64 {
                self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                7
            }
            async fn ping(&self) -> u32 {
                1
            }
        }
    };
}

/// Serves `server::Shop`, connects a `client::ShopClient` to it, and checks that `put` is
/// refused locally with `expected` in its reason while `ping` works, then that a strict
/// client is refused at connect with the same difference.
macro_rules! check {
    ($case:ident, $expected:expr) => {
        #[tokio::test]
        async fn $case() {
            let puts = std::sync::Arc::new(AtomicUsize::new(0));
            let handle = Server::new()
                .start(
                    $case::server::ShopServer::new($case::server::Counting(puts.clone())),
                    &["tcp://127.0.0.1:0"],
                )
                .await
                .unwrap();
            let address = handle.local_address();
            let shop = $case::client::ShopClient::connect(&address).await.unwrap();
            let order = $case::sample();
            let error = shop.put(order).await.unwrap_err();
            let expected: &str = $expected;
            match &error {
                RpcError::IncompatibleMethod { method, reason } => {
                    assert_eq!(method, "put");
                    assert!(
                        reason.contains(&format!("argument 'order': {expected}")),
                        "{reason:?} does not name {expected:?}"
                    );
                }
                other => panic!("expected IncompatibleMethod, got {other:?}"),
            }
            assert!(error.to_string().contains("'put'"), "{error}");
            assert_eq!(
                puts.load(Ordering::SeqCst),
                0,
                "the call reached the server"
            );
            // The connection goes on for the methods both sides agree on.
            assert_eq!(shop.ping().await.unwrap(), 1);
            // A strict client is refused at connect, with the same difference.
            let strict = $case::client::ShopClient::connect_with(
                &address,
                ClientOptions::default().strict_schema(true),
            )
            .await
            .unwrap_err();
            match &strict {
                RpcError::HandshakeMismatch { differences, .. } => assert!(
                    differences
                        .iter()
                        .any(|d| d == &format!("method 'put': argument 'order': {expected}")),
                    "{differences:?}"
                ),
                other => panic!("expected HandshakeMismatch, got {other:?}"),
            }
            handle.shutdown().await;
        }
    };
}

mod field_type {
    versions! {
        client { #[derive(Serialize, Deserialize)] pub struct Order { pub id: u32 } }
        server { #[derive(Serialize, Deserialize)] pub struct Order { pub id: i32 } }
    }
    pub fn sample() -> client::Order {
        client::Order { id: 5 }
    }
}
check!(field_type, "Order.id: client u32, server i32");

mod field_added {
    versions! {
        client { #[derive(Serialize, Deserialize)] pub struct Order { pub id: u32 } }
        server { #[derive(Serialize, Deserialize)] pub struct Order { pub id: u32, pub note: String } }
    }
    pub fn sample() -> client::Order {
        client::Order { id: 5 }
    }
}
check!(field_added, "Order: field 'note' only on the server");

mod field_removed {
    versions! {
        client { #[derive(Serialize, Deserialize)] pub struct Order { pub id: u32, pub note: String } }
        server { #[derive(Serialize, Deserialize)] pub struct Order { pub id: u32 } }
    }
    pub fn sample() -> client::Order {
        client::Order {
            id: 5,
            note: String::new(),
        }
    }
}
check!(field_removed, "Order: field 'note' only on the client");

mod fields_reordered {
    versions! {
        client { #[derive(Serialize, Deserialize)] pub struct Order { pub id: u32, pub qty: u32 } }
        server { #[derive(Serialize, Deserialize)] pub struct Order { pub qty: u32, pub id: u32 } }
    }
    pub fn sample() -> client::Order {
        client::Order { id: 5, qty: 1 }
    }
}
check!(
    fields_reordered,
    "Order: fields in another order: client (id, qty), server (qty, id)"
);

mod variant_added {
    versions! {
        client {
            #[derive(Serialize, Deserialize)] pub enum Status { Open, Paid }
            #[derive(Serialize, Deserialize)] pub struct Order { pub status: Status }
        }
        server {
            #[derive(Serialize, Deserialize)] pub enum Status { Open, Paid, Lost }
            #[derive(Serialize, Deserialize)] pub struct Order { pub status: Status }
        }
    }
    pub fn sample() -> client::Order {
        client::Order {
            status: client::Status::Open,
        }
    }
}
check!(
    variant_added,
    "Order.status: variant 'Lost' only on the server"
);

mod variant_removed {
    versions! {
        client {
            #[derive(Serialize, Deserialize)] pub enum Status { Open, Paid, Lost }
            #[derive(Serialize, Deserialize)] pub struct Order { pub status: Status }
        }
        server {
            #[derive(Serialize, Deserialize)] pub enum Status { Open, Paid }
            #[derive(Serialize, Deserialize)] pub struct Order { pub status: Status }
        }
    }
    pub fn sample() -> client::Order {
        client::Order {
            status: client::Status::Paid,
        }
    }
}
check!(
    variant_removed,
    "Order.status: variant 'Lost' only on the client"
);

mod variant_changed {
    versions! {
        client {
            #[derive(Serialize, Deserialize)] pub enum Status { Open, Paid(u32) }
            #[derive(Serialize, Deserialize)] pub struct Order { pub status: Status }
        }
        server {
            #[derive(Serialize, Deserialize)] pub enum Status { Open, Paid(u64) }
            #[derive(Serialize, Deserialize)] pub struct Order { pub status: Status }
        }
    }
    pub fn sample() -> client::Order {
        client::Order {
            status: client::Status::Paid(3),
        }
    }
}
check!(
    variant_changed,
    "Order.status::Paid.0: client u32, server u64"
);

mod nested_two_levels_down {
    versions! {
        client {
            #[derive(Serialize, Deserialize)] pub struct Item { pub sku: u32 }
            #[derive(Serialize, Deserialize)] pub struct Line { pub item: Item, pub qty: u16 }
            #[derive(Serialize, Deserialize)] pub struct Order { pub line: Line }
        }
        server {
            #[derive(Serialize, Deserialize)] pub struct Item { pub sku: String }
            #[derive(Serialize, Deserialize)] pub struct Line { pub item: Item, pub qty: u16 }
            #[derive(Serialize, Deserialize)] pub struct Order { pub line: Line }
        }
    }
    pub fn sample() -> client::Order {
        client::Order {
            line: client::Line {
                item: client::Item { sku: 1 },
                qty: 2,
            },
        }
    }
}
check!(
    nested_two_levels_down,
    "Order.line.item.sku: client u32, server string"
);

mod type_from_another_crate {
    versions! {
        client {
            #[derive(Serialize, Deserialize)] pub struct Order { pub price: rpc_tests::shapes::Money }
        }
        server {
            #[derive(Serialize, Deserialize)] pub struct Money { pub cents: i64, pub currency: String }
            #[derive(Serialize, Deserialize)] pub struct Order { pub price: Money }
        }
    }
    pub fn sample() -> client::Order {
        client::Order {
            price: rpc_tests::shapes::Money {
                cents: 1,
                currency: "EUR".into(),
            },
        }
    }
}
check!(
    type_from_another_crate,
    "Order.price.cents: client u64, server i64"
);

mod type_renamed {
    versions! {
        client { #[derive(Serialize, Deserialize)] pub struct Order { pub id: u32 } }
        server {
            #[derive(Serialize, Deserialize)] pub struct Purchase { pub id: u32 }
            pub type Order = Purchase;
        }
    }
    pub fn sample() -> client::Order {
        client::Order { id: 5 }
    }
}
check!(type_renamed, "client Order, server Purchase");
