//! SPIFFE IDs of workloads: `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`.

use std::fmt;

/// What is wrong with a would-be SPIFFE ID or one of its parts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct IdError(String);

/// The identity of a workload: who its certificate says it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    uri: String,
    /// Byte offsets into `uri`: the ends of the trust domain and of the namespace.
    trust_domain_end: usize,
    namespace: (usize, usize),
    service_account_start: usize,
}

const SCHEME: &str = "spiffe://";
/// Longest trust domain SPIFFE allows.
const MAX_TRUST_DOMAIN: usize = 255;
/// Longest Kubernetes name (namespace, service account).
const MAX_NAME: usize = 253;

impl SpiffeId {
    /// The workload identity of service account `service_account` in `namespace`.
    pub fn new(
        trust_domain: &str,
        namespace: &str,
        service_account: &str,
    ) -> Result<Self, IdError> {
        check_trust_domain(trust_domain)?;
        check_name(namespace, "namespace")?;
        check_name(service_account, "service account")?;
        Self::parse(&format!(
            "{SCHEME}{trust_domain}/ns/{namespace}/sa/{service_account}"
        ))
    }

    /// Reads `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`.
    pub fn parse(uri: &str) -> Result<Self, IdError> {
        let Some(rest) = uri.strip_prefix(SCHEME) else {
            return Err(IdError(format!(
                "{uri:?} is not a SPIFFE ID: it must start with `spiffe://`, like \
                 `spiffe://cluster.local/ns/shop/sa/orders`"
            )));
        };
        let shape = || {
            IdError(format!(
                "{uri:?} is not a workload SPIFFE ID: expected \
                 `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`"
            ))
        };
        let mut parts = rest.split('/');
        let (Some(td), Some("ns"), Some(ns), Some("sa"), Some(sa), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(shape());
        };
        check_trust_domain(td)?;
        check_name(ns, "namespace")?;
        check_name(sa, "service account")?;
        let trust_domain_end = SCHEME.len() + td.len();
        let ns_start = trust_domain_end + "/ns/".len();
        let ns_end = ns_start + ns.len();
        Ok(Self {
            uri: uri.to_owned(),
            trust_domain_end,
            namespace: (ns_start, ns_end),
            service_account_start: ns_end + "/sa/".len(),
        })
    }

    /// The trust domain, e.g. `cluster.local`.
    pub fn trust_domain(&self) -> &str {
        &self.uri[SCHEME.len()..self.trust_domain_end]
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.uri[self.namespace.0..self.namespace.1]
    }

    /// The service account.
    pub fn service_account(&self) -> &str {
        &self.uri[self.service_account_start..]
    }

    /// The whole URI.
    pub fn as_str(&self) -> &str {
        &self.uri
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri)
    }
}

impl std::str::FromStr for SpiffeId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, IdError> {
        Self::parse(s)
    }
}

/// A trust domain: lowercase letters, digits, `.`, `-` and `_` (the SPIFFE spec's set).
pub fn check_trust_domain(td: &str) -> Result<(), IdError> {
    if td.is_empty() || td.len() > MAX_TRUST_DOMAIN {
        return Err(IdError(format!(
            "trust domain {td:?} must have 1 to {MAX_TRUST_DOMAIN} characters"
        )));
    }
    if let Some(c) = td
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '.' | '-' | '_'))
    {
        return Err(IdError(format!(
            "trust domain {td:?} contains {c:?}; only lowercase letters, digits, '.', '-' and \
             '_' are allowed"
        )));
    }
    Ok(())
}

/// A namespace or service account name: what Kubernetes allows (lowercase letters, digits,
/// `-`, `.`), at most 253 characters, not `.` or `..`.
pub fn check_name(name: &str, what: &str) -> Result<(), IdError> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(IdError(format!(
            "{what} {name:?} must have 1 to {MAX_NAME} characters"
        )));
    }
    if name == "." || name == ".." {
        return Err(IdError(format!("{what} {name:?} is not a name")));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '.' | '-'))
    {
        return Err(IdError(format!(
            "{what} {name:?} contains {c:?}; Kubernetes names use lowercase letters, digits, \
             '-' and '.'"
        )));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parts_of_an_id() {
        let id = SpiffeId::parse("spiffe://cluster.local/ns/shop/sa/orders").unwrap();
        assert_eq!(id.trust_domain(), "cluster.local");
        assert_eq!(id.namespace(), "shop");
        assert_eq!(id.service_account(), "orders");
        assert_eq!(
            SpiffeId::new("cluster.local", "shop", "orders").unwrap(),
            id
        );
    }

    #[test]
    fn malformed_ids_are_refused() {
        for bad in [
            "https://cluster.local/ns/shop/sa/orders",
            "spiffe://cluster.local/ns/shop",
            "spiffe://cluster.local/ns/shop/sa/orders/x",
            "spiffe://cluster.local/ns//sa/orders",
            "spiffe://Cluster.local/ns/shop/sa/orders",
            "spiffe://cluster.local/ns/shop/sa/Orders",
            "spiffe://cluster.local/ns/../sa/orders",
            "spiffe:///ns/shop/sa/orders",
            "spiffe://cluster.local/sa/shop/ns/orders",
            "spiffe://cluster.local/ns/shop/sa/orders?x=1",
        ] {
            assert!(SpiffeId::parse(bad).is_err(), "{bad} was accepted");
        }
        assert!(SpiffeId::new("cluster.local", "shop", "a/b").is_err());
    }
}
