// `#[cfg]` and lint attributes on methods reach everything generated for them, and raw
// identifiers get their plain wire names, in a crate that denies warnings.
#![deny(warnings)]

#[rpc_core::service]
pub trait Legacy {
    #[allow(non_snake_case)]
    async fn GetItem(&self, itemId: u32) -> u32;
    #[cfg(any())]
    async fn never(&self) -> u8;
    async fn r#type(&self) -> u8;
}

pub struct Old;

impl Legacy for Old {
    #[allow(non_snake_case)]
    async fn GetItem(&self, itemId: u32) -> u32 {
        itemId
    }
    async fn r#type(&self) -> u8 {
        1
    }
}

fn main() {
    let _server = LegacyServer::new(Old);
    let names: Vec<&str> = LegacyClient::schema()
        .methods
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(names, ["GetItem", "type"]);
}
