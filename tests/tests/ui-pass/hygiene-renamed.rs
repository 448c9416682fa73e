// A crate that knows rpc-core under another name says so with `crate = "..."`; the expansion
// then names only that path (and still works with no prelude).
#![no_implicit_prelude]

extern crate rpc_core as renamed_rpc;

mod app {
    #[::renamed_rpc::service(crate = "::renamed_rpc")]
    pub trait Store {
        /// Stores a value.
        #[rpc(name = "store", idempotent)]
        async fn put(&self, key: &str, value: &[u8]) -> bool;
    }

    pub struct Memory;

    impl Store for Memory {
        async fn put(&self, _key: &str, _value: &[u8]) -> bool {
            true
        }
    }
}

fn main() {
    let _server = app::StoreServer::new(app::Memory);
    let _schema: &'static ::renamed_rpc::ServiceSchema = app::StoreClient::schema();
}
