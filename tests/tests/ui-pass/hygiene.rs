// The expansion names only absolute paths: it compiles with no prelude in scope and with
// local items that shadow common names.
#![no_implicit_prelude]

struct Result;
struct Box;
struct Vec;
struct String;
struct Option;
trait Future {}
trait Send {}

mod app {
    #[::rpc_core::service]
    pub trait Store {
        /// Stores a value.
        #[rpc(name = "store", timeout = "5s", idempotent)]
        async fn put(&self, key: ::std::string::String, value: ::std::vec::Vec<u8>) -> bool;
        #[rpc(id = 7)]
        #[deprecated(note = "use put")]
        async fn get(&self, key: ::std::string::String) -> ::std::option::Option<::std::vec::Vec<u8>>;
        async fn borrowed(&self, key: &str, value: &[u8], many: &[u32], one: &(u8, u16)) -> u64;
        async fn blob(&self) -> ::std::vec::Vec<u8>;
        async fn nothing(&self);
    }

    pub struct Memory;

    impl Store for Memory {
        async fn put(&self, _key: ::std::string::String, _value: ::std::vec::Vec<u8>) -> bool {
            true
        }
        async fn get(&self, _key: ::std::string::String) -> ::std::option::Option<::std::vec::Vec<u8>> {
            ::std::option::Option::None
        }
        async fn borrowed(&self, _key: &str, _value: &[u8], _many: &[u32], _one: &(u8, u16)) -> u64 {
            0
        }
        async fn blob(&self) -> ::std::vec::Vec<u8> {
            ::std::vec::Vec::new()
        }
        async fn nothing(&self) {}
    }
}

fn main() {
    let _server = app::StoreServer::new(app::Memory);
    let _schema: &'static ::rpc_core::ServiceSchema = app::StoreClient::schema();
}
