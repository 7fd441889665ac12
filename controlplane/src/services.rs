//! The services catalog: every discovered service, as one shared value that sources publish
//! and `Watch` streams diff against what they last sent. It is kept apart from the filter
//! catalog, so an endpoint that comes or goes never makes the control plane look at filters.
//!
//! Services are held by `Arc`, and a publish keeps the `Arc` of every service equal to the
//! one it replaces: a stream finds what changed by pointer, one comparison per service, and
//! 1,000 streams share one copy of each service.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;

use weft_api::v1;

/// Services by `namespace/name`.
pub type ServiceMap = BTreeMap<String, Arc<v1::Service>>;

/// `namespace/name` of a service, the key of a [`ServiceMap`] and of `DiscoveryUpdate.removed`.
pub fn service_key(service: &v1::Service) -> String {
    format!("{}/{}", service.namespace, service.name)
}

/// A service map with the version it was published as.
#[derive(Debug, Default)]
pub(crate) struct PublishedServices {
    /// 0 until the first publish (nothing is sent before it); then +1 per change.
    pub(crate) version: u64,
    pub(crate) services: Arc<ServiceMap>,
}

impl PublishedServices {
    /// The successor of `self` holding `services`, reusing the `Arc` of every service equal
    /// to the one it replaces; `None` when nothing changed (and something was published
    /// before).
    pub(crate) fn next(&self, mut services: ServiceMap) -> Option<Self> {
        let old = &self.services;
        for (key, service) in &mut services {
            if let Some(previous) = old.get(key)
                && (Arc::ptr_eq(previous, service) || **previous == **service)
            {
                *service = Arc::clone(previous);
            }
        }
        let unchanged = self.version > 0
            && services.len() == old.len()
            && services
                .iter()
                .zip(old.iter())
                .all(|((k1, a), (k2, b))| k1 == k2 && Arc::ptr_eq(a, b));
        (!unchanged).then(|| Self {
            version: self.version + 1,
            services: Arc::new(services),
        })
    }
}

/// Which namespaces a stream asked for; empty for all.
#[derive(Debug, Clone, Default)]
pub(crate) struct Namespaces(Vec<String>);

impl Namespaces {
    pub(crate) fn new(mut namespaces: Vec<String>) -> Self {
        namespaces.sort();
        namespaces.dedup();
        Self(namespaces)
    }

    pub(crate) fn wants(&self, service: &v1::Service) -> bool {
        self.0.is_empty() || self.0.binary_search(&service.namespace).is_ok()
    }

    pub(crate) fn as_slice(&self) -> &[String] {
        &self.0
    }
}

/// What changed from `old` to `new` for a stream that wants `namespaces`: the services added
/// or changed (whole) and the keys of those removed. One pass over both sorted maps.
pub(crate) fn diff(
    old: &ServiceMap,
    new: &ServiceMap,
    namespaces: &Namespaces,
) -> (Vec<v1::Service>, Vec<String>) {
    let mut changed = Vec::new();
    let mut removed = Vec::new();
    let mut old_iter = old.iter().peekable();
    let mut new_iter = new.iter().peekable();
    loop {
        let order = match (old_iter.peek(), new_iter.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((old_key, _)), Some((new_key, _))) => old_key.cmp(new_key),
        };
        match order {
            Ordering::Less => {
                if let Some((key, service)) = old_iter.next()
                    && namespaces.wants(service)
                {
                    removed.push(key.clone());
                }
            }
            Ordering::Greater => {
                if let Some((_, service)) = new_iter.next()
                    && namespaces.wants(service)
                {
                    changed.push((**service).clone());
                }
            }
            Ordering::Equal => {
                if let (Some((_, before)), Some((_, after))) = (old_iter.next(), new_iter.next())
                    && !Arc::ptr_eq(before, after)
                    && namespaces.wants(after)
                {
                    changed.push((**after).clone());
                }
            }
        }
    }
    (changed, removed)
}

/// Every service of `map` a stream that wants `namespaces` gets.
pub(crate) fn all(map: &ServiceMap, namespaces: &Namespaces) -> Vec<v1::Service> {
    map.values()
        .filter(|s| namespaces.wants(s))
        .map(|s| (**s).clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(namespace: &str, name: &str, address: &str) -> v1::Service {
        v1::Service {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            endpoints: vec![v1::ServiceEndpoint {
                address: address.to_owned(),
                ..v1::ServiceEndpoint::default()
            }],
            ..v1::Service::default()
        }
    }

    fn map(services: &[v1::Service]) -> ServiceMap {
        services
            .iter()
            .map(|s| (service_key(s), Arc::new(s.clone())))
            .collect()
    }

    #[test]
    fn publishing_keeps_equal_services_and_skips_no_change() {
        let first = PublishedServices::default()
            .next(map(&[
                service("a", "x", "1.1.1.1"),
                service("b", "y", "2.2.2.2"),
            ]))
            .expect("first publish");
        assert_eq!(first.version, 1);
        assert!(
            first
                .next(map(&[
                    service("a", "x", "1.1.1.1"),
                    service("b", "y", "2.2.2.2")
                ]))
                .is_none(),
            "equal services are no change"
        );
        let second = first
            .next(map(&[
                service("a", "x", "1.1.1.1"),
                service("b", "y", "3.3.3.3"),
            ]))
            .expect("a change");
        assert_eq!(second.version, 2);
        assert!(Arc::ptr_eq(&first.services["a/x"], &second.services["a/x"]));
        assert!(!Arc::ptr_eq(
            &first.services["b/y"],
            &second.services["b/y"]
        ));
        // An empty first publish is still a publish: it tells proxies there is nothing.
        assert_eq!(
            PublishedServices::default()
                .next(BTreeMap::new())
                .map(|p| p.version),
            Some(1)
        );
    }

    #[test]
    fn diff_names_only_what_changed_in_the_wanted_namespaces() {
        let old = PublishedServices::default()
            .next(map(&[
                service("a", "gone", "1.1.1.1"),
                service("a", "same", "1.1.1.1"),
                service("a", "moved", "1.1.1.1"),
                service("b", "other", "1.1.1.1"),
            ]))
            .expect("publish");
        let new = old
            .next(map(&[
                service("a", "added", "1.1.1.1"),
                service("a", "same", "1.1.1.1"),
                service("a", "moved", "9.9.9.9"),
                service("b", "other", "9.9.9.9"),
            ]))
            .expect("publish");
        let (changed, removed) = diff(&old.services, &new.services, &Namespaces::default());
        let names: Vec<String> = changed.iter().map(service_key).collect();
        assert_eq!(names, ["a/added", "a/moved", "b/other"]);
        assert_eq!(removed, ["a/gone"]);
        let (changed, removed) = diff(
            &old.services,
            &new.services,
            &Namespaces::new(vec!["b".to_owned()]),
        );
        let names: Vec<String> = changed.iter().map(service_key).collect();
        assert_eq!(names, ["b/other"]);
        assert!(removed.is_empty());
        assert_eq!(
            all(&new.services, &Namespaces::new(vec!["b".to_owned()])).len(),
            1
        );
    }
}
