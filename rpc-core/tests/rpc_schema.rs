//! `rpc-schema diff OLD.json NEW.json`: compatible changes exit 0, each breaking change is
//! listed with its rule and exits 1, unreadable input exits 2.

use std::path::PathBuf;
use std::process::Command;

use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Order {
    pub id: u32,
    pub qty: u16,
}

mod changed {
    #[derive(serde::Serialize, serde::Deserialize)]
    pub struct Order {
        pub id: i32,
        pub qty: u16,
    }
}

mod v1 {
    use super::Order;
    #[rpc_core::service]
    pub trait Shop {
        #[rpc(idempotent)]
        async fn get(&self, id: u32) -> Option<Order>;
        async fn put(&self, order: Order) -> bool;
        async fn cancel(&self, id: u32);
        async fn rename_me(&self);
    }
}

/// Compatible with v1: a method added, methods reordered, an argument renamed, a Rust method
/// renamed with its wire name kept, docs added.
mod v2 {
    use super::Order;
    #[rpc_core::service]
    pub trait Shop {
        /// Cancels.
        async fn cancel(&self, order_id: u32);
        async fn put(&self, order: Order) -> bool;
        #[rpc(idempotent)]
        async fn get(&self, id: u32) -> Option<Order>;
        async fn count(&self) -> u64;
        #[rpc(name = "rename_me")]
        async fn renamed(&self);
    }
}

/// Breaks v1 in every way the rules name.
mod v3 {
    use super::changed::Order;
    #[rpc_core::service]
    pub trait Shop {
        async fn get(&self, id: u32) -> Option<Order>;
        async fn put(&self, order: Order, urgent: bool) -> bool;
        #[rpc(id = 99)]
        async fn rename_me(&self);
    }
}

mod other_name {
    #[rpc_core::service]
    pub trait Store {
        async fn cancel(&self, id: u32);
    }
}

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let path = std::env::temp_dir().join(format!("rpc-schema-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        Dir(path)
    }

    fn write(&self, name: &str, schema: &rpc_core::ServiceSchema) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, schema.to_json()).unwrap();
        path
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn diff(old: &PathBuf, new: &PathBuf) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rpc-schema"))
        .arg("diff")
        .arg(old)
        .arg(new)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn compatible_changes_pass() {
    let dir = Dir::new("ok");
    let old = dir.write("v1.json", v1::ShopClient::schema());
    let new = dir.write("v2.json", v2::ShopClient::schema());
    let (code, text) = diff(&old, &new);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("compatible"), "{text}");
    assert!(text.contains("added method 'count'"), "{text}");
    // The same file against itself.
    assert_eq!(diff(&old, &old).0, 0);
}

#[test]
fn each_breaking_change_is_named_with_its_rule() {
    let dir = Dir::new("break");
    let old = dir.write("v1.json", v1::ShopClient::schema());
    let new = dir.write("v3.json", v3::ShopClient::schema());
    let (code, text) = diff(&old, &new);
    assert_eq!(code, 1, "{text}");
    for expected in [
        "[method-removed] method 'cancel': the method was removed",
        "[arguments-changed] method 'put': it took 1 argument(s) and now takes 2",
        "[return-changed] method 'get': return value: Order.id: old u32, new i32",
        "[idempotency-removed] method 'get'",
        "[id-changed] method 'rename_me'",
    ] {
        assert!(text.contains(expected), "{expected:?} not in:\n{text}");
    }
}

#[test]
fn a_renamed_service_breaks_every_client() {
    let dir = Dir::new("svc");
    let old = dir.write("v1.json", v1::ShopClient::schema());
    let new = dir.write("other.json", other_name::StoreClient::schema());
    let (code, text) = diff(&old, &new);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("[service-renamed]"), "{text}");
}

#[test]
fn unreadable_input_is_exit_2() {
    let dir = Dir::new("bad");
    let good = dir.write("v1.json", v1::ShopClient::schema());
    let junk = dir.0.join("junk.json");
    std::fs::write(&junk, "{ not a schema").unwrap();
    let (code, text) = diff(&good, &junk);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("is not a service schema"), "{text}");
    let (code, _) = diff(&good, &dir.0.join("missing.json"));
    assert_eq!(code, 2);
    let out = Command::new(env!("CARGO_BIN_EXE_rpc-schema"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
