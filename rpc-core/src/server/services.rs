//! [`Services`]: what one server offers, by service name. A connection's `Hello` names the one
//! it wants; everything after the handshake uses that one.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use super::Service;
use crate::error::RpcError;

/// The services of one server, keyed by their schema's name.
#[derive(Clone, Default)]
pub(crate) struct Services {
    by_name: BTreeMap<String, Arc<dyn Service>>,
    /// The first name added twice: the server refuses to listen, naming it.
    duplicate: Option<String>,
}

impl Services {
    /// Registers `service` under its schema's name; a second service of that name is refused
    /// (and remembered, so listening fails with [`RpcError::DuplicateService`]).
    pub(crate) fn add(&mut self, service: Arc<dyn Service>) {
        let name = &service.schema().name;
        if self.by_name.contains_key(name) {
            self.duplicate.get_or_insert_with(|| name.clone());
            return;
        }
        self.by_name.insert(name.clone(), service);
    }

    /// Whether a server may listen with these services: at least one, no name twice.
    pub(crate) fn check(&self) -> Result<(), RpcError> {
        if let Some(service) = &self.duplicate {
            return Err(RpcError::DuplicateService {
                service: service.clone(),
            });
        }
        if self.by_name.is_empty() {
            return Err(RpcError::NoServices);
        }
        Ok(())
    }

    /// The service named `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&Arc<dyn Service>> {
        self.by_name.get(name)
    }

    /// Every service's name, sorted.
    pub(crate) fn names(&self) -> Vec<String> {
        self.by_name.keys().cloned().collect()
    }

    /// Every service.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Arc<dyn Service>> {
        self.by_name.values()
    }
}

impl fmt::Debug for Services {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        list.entries(self.by_name.keys());
        if let Some(duplicate) = &self.duplicate {
            list.entry(&format_args!("{duplicate:?} (added twice)"));
        }
        list.finish()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::schema::{SchemaBuilder, ServiceSchema};
    use crate::server::{DispatchError, HandlerFuture, Request};
    use std::sync::OnceLock;

    struct Named(&'static ServiceSchema);

    impl Service for Named {
        fn schema(&self) -> &'static ServiceSchema {
            self.0
        }

        fn dispatch(&self, _: u32, _: Request) -> Result<HandlerFuture, DispatchError> {
            Err(DispatchError::UnknownMethod(0))
        }
    }

    /// A service with no methods named `name` ("Alpha" or "Beta").
    pub(crate) fn named(name: &'static str) -> Arc<dyn Service> {
        static SCHEMAS: OnceLock<[ServiceSchema; 2]> = OnceLock::new();
        let schemas = SCHEMAS.get_or_init(|| {
            [
                SchemaBuilder::new("Alpha").finish(),
                SchemaBuilder::new("Beta").finish(),
            ]
        });
        let schema = schemas.iter().find(|s| s.name == name).expect("a schema");
        Arc::new(Named(schema))
    }

    #[test]
    fn no_service_is_an_error() {
        assert!(matches!(
            Services::default().check(),
            Err(RpcError::NoServices)
        ));
    }

    #[test]
    fn a_name_added_twice_is_refused_by_name_and_the_first_stays() {
        let mut services = Services::default();
        services.add(named("Beta"));
        services.add(named("Alpha"));
        services.add(named("Beta"));
        assert!(matches!(
            services.check(),
            Err(RpcError::DuplicateService { service }) if service == "Beta"
        ));
        assert_eq!(services.names(), ["Alpha", "Beta"]);
        assert_eq!(
            format!("{services:?}"),
            r#"["Alpha", "Beta", "Beta" (added twice)]"#
        );
    }

    #[test]
    fn distinct_names_are_served() {
        let mut services = Services::default();
        services.add(named("Alpha"));
        services.add(named("Beta"));
        assert!(services.check().is_ok());
        assert!(services.get("Beta").is_some());
        assert!(services.get("Gamma").is_none());
        assert_eq!(services.iter().count(), 2);
    }
}
