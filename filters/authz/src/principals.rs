//! Mesh principals: rules on who the caller is by its mTLS identity, a SPIFFE workload ID
//! `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`, in the vocabulary of Istio's
//! `AuthorizationPolicy` `from.source` (`principals`, `notPrincipals`, `namespaces`,
//! `notNamespaces`).
//!
//! Patterns are parsed into segments once, at configure time; a request's identity is parsed
//! once ([`Spans::parse`], cached by `rules::Facts`), and matching it compares segments without
//! allocating.

use crate::config;

/// How a principal is written, for error messages.
const PRINCIPAL_EXAMPLE: &str = "a principal is `<trust-domain>/ns/<namespace>/sa/<service-account>`, with or without `spiffe://`, e.g. `spiffe://cluster.local/ns/shop/sa/orders` or `cluster.local/ns/shop/*`";

const SCHEME: &str = "spiffe://";

/// A peer identity parsed as a workload ID: the trust domain is `identity[9..td_end]`, the
/// namespace `identity[td_end + 4..ns_end]`, the service account `identity[ns_end + 4..]`
/// (`/ns/` and `/sa/` are 4 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Spans {
    td_end: usize,
    ns_end: usize,
}

impl Spans {
    /// Where the segments of `identity` are, if it is a SPIFFE workload ID
    /// `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>` with valid characters (the
    /// SPIFFE ID spec's: trust domains lower-case letters, digits, `.`, `-`, `_`; path segments
    /// letters, digits, `.`, `-`, `_`, not `.` or `..`). Anything else, such as another path
    /// shape, a port, a query or a trailing slash, is `None`.
    pub(crate) fn parse(identity: &str) -> Option<Spans> {
        let rest = identity.strip_prefix(SCHEME)?;
        let mut parts = rest.split('/');
        let (Some(td), Some("ns"), Some(ns), Some("sa"), Some(sa), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        if !is_trust_domain(td) || !is_path_segment(ns) || !is_path_segment(sa) {
            return None;
        }
        let td_end = SCHEME.len() + td.len();
        Some(Spans {
            td_end,
            ns_end: td_end + "/ns/".len() + ns.len(),
        })
    }

    /// The workload ID of `identity`, which these spans were parsed from.
    pub(crate) fn of(self, identity: &str) -> WorkloadId<'_> {
        WorkloadId {
            trust_domain: &identity[SCHEME.len()..self.td_end],
            namespace: &identity[self.td_end + 4..self.ns_end],
            service_account: &identity[self.ns_end + 4..],
        }
    }
}

/// The segments of a SPIFFE workload ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WorkloadId<'a> {
    pub(crate) trust_domain: &'a str,
    pub(crate) namespace: &'a str,
    pub(crate) service_account: &'a str,
}

/// Who the caller is, as far as `from` conditions can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peer<'a> {
    /// No peer identity: a plaintext connection (or an empty identity).
    Plaintext,
    /// An mTLS peer whose identity is not a SPIFFE workload ID.
    Other,
    /// An mTLS peer with a workload ID.
    Workload(WorkloadId<'a>),
}

/// One segment of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    /// `*`: any value.
    Any,
    /// The whole value.
    Exact(String),
    /// `abc*`: the value starts with this.
    Prefix(String),
    /// `*abc`: the value ends with this.
    Suffix(String),
}

impl Segment {
    fn matches(&self, value: &str) -> bool {
        match self {
            Segment::Any => true,
            Segment::Exact(exact) => value == exact,
            Segment::Prefix(prefix) => value.starts_with(prefix.as_str()),
            Segment::Suffix(suffix) => value.ends_with(suffix.as_str()),
        }
    }

    /// A `namespaces` entry: `shop`, `*`, `shop-*` or `*-prod`.
    pub(crate) fn namespace(text: &str) -> Result<Segment, String> {
        const EXAMPLE: &str = "e.g. `shop`, `shop-*`, `*-prod` or `*`";
        if text.is_empty() {
            return Err(format!("the namespace is empty; {EXAMPLE}"));
        }
        if text.contains('/') {
            return Err(format!(
                "`{text}` is not a namespace (no `/`; match whole identities with `principals`); {EXAMPLE}"
            ));
        }
        let segment = if text == "*" {
            Segment::Any
        } else if let Some(prefix) = text.strip_suffix('*') {
            Segment::Prefix(prefix.to_owned())
        } else if let Some(suffix) = text.strip_prefix('*') {
            Segment::Suffix(suffix.to_owned())
        } else {
            Segment::Exact(text.to_owned())
        };
        let (Segment::Exact(literal) | Segment::Prefix(literal) | Segment::Suffix(literal)) =
            &segment
        else {
            return Ok(segment);
        };
        if literal.contains('*') {
            return Err(format!(
                "`{text}`: `*` may only stand alone or begin or end the namespace; {EXAMPLE}"
            ));
        }
        check_segment(
            literal,
            Position::Namespace,
            !matches!(segment, Segment::Exact(_)),
        )
        .map_err(|err| format!("`{text}`: {err}; {EXAMPLE}"))?;
        Ok(segment)
    }
}

/// A `principals` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Principal {
    /// `*` alone: any mTLS peer, whatever its identity.
    AnyPeer,
    /// A workload ID pattern, segment by segment.
    Workload {
        trust_domain: Segment,
        namespace: Segment,
        service_account: Segment,
    },
}

/// The five `/`-separated parts of `<trust-domain>/ns/<namespace>/sa/<service-account>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    TrustDomain,
    Ns,
    Namespace,
    Sa,
    ServiceAccount,
}

const POSITIONS: [Position; 5] = [
    Position::TrustDomain,
    Position::Ns,
    Position::Namespace,
    Position::Sa,
    Position::ServiceAccount,
];

impl Position {
    fn keyword(self) -> Option<&'static str> {
        match self {
            Position::Ns => Some("ns"),
            Position::Sa => Some("sa"),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Position::TrustDomain => "the trust domain",
            Position::Namespace => "the namespace",
            Position::ServiceAccount => "the service account",
            Position::Ns => "`ns`",
            Position::Sa => "`sa`",
        }
    }
}

/// How a principal's `*` is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Anchor {
    /// All five parts are written (each value may be `*`; the first may start with `*`, the
    /// last end with `*`).
    Both,
    /// Istio's prefix form, ending with `*`: the parts written are the first ones, the last of
    /// them cut short.
    Start,
    /// Istio's suffix form, starting with `*`: the parts written are the last ones, the first of
    /// them cut short.
    End,
}

impl Principal {
    /// Parse a principal as written in a config: `*`, or a SPIFFE workload ID with or without
    /// `spiffe://`, possibly with wildcards (module docs, README "Mesh principals").
    pub(crate) fn parse(text: &str) -> Result<Principal, String> {
        if text == "*" {
            return Ok(Principal::AnyPeer);
        }
        let fail = |what: String| Err(format!("`{text}`: {what}; {PRINCIPAL_EXAMPLE}"));
        if text.is_empty() {
            return Err(format!("the principal is empty; {PRINCIPAL_EXAMPLE}"));
        }
        if text.contains(['?', '#']) {
            return fail("a SPIFFE ID has no query or fragment (`?`, `#`)".to_owned());
        }
        let body = match text.strip_prefix(SCHEME) {
            Some(body) => body,
            None => match text.find("://") {
                Some(end) if text[..end].eq_ignore_ascii_case("spiffe") => {
                    return fail("the scheme is written `spiffe://`, in lower case".to_owned());
                }
                Some(end) => {
                    return fail(format!(
                        "`{}://` is not a SPIFFE ID; only `spiffe://` identities are principals",
                        &text[..end]
                    ));
                }
                None if text.starts_with("spiffe:") => {
                    return fail("write `spiffe://` before the trust domain".to_owned());
                }
                None => text,
            },
        };
        let parts: Vec<&str> = body.split('/').collect();
        let anchor = if parts.len() == POSITIONS.len() {
            Anchor::Both
        } else if parts.len() > POSITIONS.len() {
            return fail(format!(
                "{} `/`-separated parts, expected 5 (is there a trailing `/`?)",
                parts.len()
            ));
        } else if body.ends_with('*') {
            Anchor::Start
        } else if body.starts_with('*') {
            Anchor::End
        } else if body.contains('*') {
            return fail(
                "`*` may stand for a whole segment, or begin or end the principal".to_owned(),
            );
        } else {
            return fail(format!(
                "{} `/`-separated part{}, expected 5",
                parts.len(),
                if parts.len() == 1 { "" } else { "s" }
            ));
        };
        // Line the parts written up with the positions they stand for.
        let positions = match anchor {
            Anchor::Both | Anchor::Start => &POSITIONS[..parts.len()],
            Anchor::End => &POSITIONS[POSITIONS.len() - parts.len()..],
        };
        let mut segments = [Segment::Any, Segment::Any, Segment::Any];
        for (i, (&part, &position)) in parts.iter().zip(positions).enumerate() {
            // The part `*` cuts short, in the prefix or suffix form: it stands for the start or
            // the end of the value (or keyword) at its position.
            let cut_end = anchor == Anchor::Start && i == parts.len() - 1;
            let cut_start = anchor == Anchor::End && i == 0;
            let segment = if cut_end || cut_start {
                let literal = if cut_end {
                    &part[..part.len() - 1]
                } else {
                    &part[1..]
                };
                if literal.contains('*') {
                    return fail(
                        "`*` may stand for a whole segment, or begin or end the principal"
                            .to_owned(),
                    );
                }
                if let Some(keyword) = position.keyword() {
                    let fits = if cut_end {
                        keyword.starts_with(literal)
                    } else {
                        keyword.ends_with(literal)
                    };
                    if !fits {
                        return fail(format!("expected {} where `{part}` is", position.name()));
                    }
                    continue;
                }
                if literal.is_empty() {
                    Segment::Any
                } else if cut_end {
                    Segment::Prefix(literal.to_owned())
                } else {
                    Segment::Suffix(literal.to_owned())
                }
            } else if let Some(keyword) = position.keyword() {
                if part != keyword {
                    return fail(format!("expected {} where `{part}` is", position.name()));
                }
                continue;
            } else if part == "*" {
                Segment::Any
            } else if anchor == Anchor::Both
                && position == Position::TrustDomain
                && part.len() > 1
                && part.starts_with('*')
                && !part[1..].contains('*')
            {
                Segment::Suffix(part[1..].to_owned())
            } else if anchor == Anchor::Both
                && position == Position::ServiceAccount
                && part.len() > 1
                && part.ends_with('*')
                && !part[..part.len() - 1].contains('*')
            {
                Segment::Prefix(part[..part.len() - 1].to_owned())
            } else if part.contains('*') {
                return fail(
                    "`*` may stand for a whole segment, or begin or end the principal".to_owned(),
                );
            } else {
                Segment::Exact(part.to_owned())
            };
            let (Segment::Exact(literal) | Segment::Prefix(literal) | Segment::Suffix(literal)) =
                &segment
            else {
                segments[value_index(position)] = segment;
                continue;
            };
            check_segment(literal, position, !matches!(segment, Segment::Exact(_)))
                .map_err(|err| format!("`{text}`: {err}; {PRINCIPAL_EXAMPLE}"))?;
            segments[value_index(position)] = segment;
        }
        let [trust_domain, namespace, service_account] = segments;
        Ok(Principal::Workload {
            trust_domain,
            namespace,
            service_account,
        })
    }

    pub(crate) fn matches(&self, peer: Peer<'_>) -> bool {
        match (self, peer) {
            (Principal::AnyPeer, Peer::Plaintext) => false,
            (Principal::AnyPeer, _) => true,
            (
                Principal::Workload {
                    trust_domain,
                    namespace,
                    service_account,
                },
                Peer::Workload(id),
            ) => {
                trust_domain.matches(id.trust_domain)
                    && namespace.matches(id.namespace)
                    && service_account.matches(id.service_account)
            }
            (Principal::Workload { .. }, _) => false,
        }
    }
}

/// The index of a value position in `[trust_domain, namespace, service_account]`.
fn value_index(position: Position) -> usize {
    match position {
        Position::TrustDomain => 0,
        Position::Namespace => 1,
        _ => 2,
    }
}

/// Check the literal text of a value at `position`; `partial`: it is only the start or the end
/// of the value (so it may be empty, and `.` or `..` are fine).
fn check_segment(literal: &str, position: Position, partial: bool) -> Result<(), String> {
    let name = position.name();
    if literal.is_empty() && !partial {
        return Err(format!("{name} is empty"));
    }
    if literal.contains('%') {
        return Err(format!(
            "{name} `{literal}` is percent-encoded; SPIFFE IDs are not"
        ));
    }
    if position == Position::TrustDomain {
        if let Some(upper) = literal.chars().find(char::is_ascii_uppercase) {
            return Err(format!(
                "trust domains are lower case in SPIFFE IDs (`{upper}` in `{literal}`)"
            ));
        }
        if let Some(bad) = literal.chars().find(|c| !is_trust_domain_char(*c)) {
            return Err(format!(
                "{name} `{literal}` has `{bad}`; it may hold lower-case letters, digits, `.`, `-` and `_` (no port)"
            ));
        }
    } else {
        if let Some(bad) = literal.chars().find(|c| !is_segment_char(*c)) {
            return Err(format!(
                "{name} `{literal}` has `{bad}`; it may hold letters, digits, `.`, `-` and `_`"
            ));
        }
        if !partial && (literal == "." || literal == "..") {
            return Err(format!("{name} cannot be `{literal}`"));
        }
    }
    Ok(())
}

fn is_trust_domain_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_')
}

fn is_segment_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')
}

fn is_trust_domain(text: &str) -> bool {
    !text.is_empty() && text.chars().all(is_trust_domain_char)
}

fn is_path_segment(text: &str) -> bool {
    !text.is_empty() && text != "." && text != ".." && text.chars().all(is_segment_char)
}

/// A rule's `from` condition, compiled: every list given must match.
#[derive(Debug, Default)]
pub(crate) struct SourceMatch {
    principals: Vec<Principal>,
    not_principals: Vec<Principal>,
    namespaces: Vec<Segment>,
    not_namespaces: Vec<Segment>,
}

impl SourceMatch {
    /// Compile the `from` found at config path `at` (`rules.allow[0].from`).
    pub(crate) fn compile(raw: &config::Source, at: &str) -> Result<SourceMatch, String> {
        fn list<T>(
            values: Option<&Vec<String>>,
            at: &str,
            field: &str,
            parse: fn(&str) -> Result<T, String>,
        ) -> Result<Vec<T>, String> {
            let Some(values) = values else {
                return Ok(Vec::new());
            };
            if values.is_empty() {
                return Err(format!(
                    "{at}.{field}: give at least one value, or leave `{field}` out"
                ));
            }
            values
                .iter()
                .enumerate()
                .map(|(i, value)| parse(value).map_err(|err| format!("{at}.{field}[{i}]: {err}")))
                .collect()
        }
        let source = SourceMatch {
            principals: list(raw.principals.as_ref(), at, "principals", Principal::parse)?,
            not_principals: list(
                raw.not_principals.as_ref(),
                at,
                "not_principals",
                Principal::parse,
            )?,
            namespaces: list(
                raw.namespaces.as_ref(),
                at,
                "namespaces",
                Segment::namespace,
            )?,
            not_namespaces: list(
                raw.not_namespaces.as_ref(),
                at,
                "not_namespaces",
                Segment::namespace,
            )?,
        };
        if source.principals.is_empty()
            && source.not_principals.is_empty()
            && source.namespaces.is_empty()
            && source.not_namespaces.is_empty()
        {
            return Err(format!(
                "{at}: give at least one of `principals`, `not_principals`, `namespaces` or `not_namespaces`"
            ));
        }
        Ok(source)
    }

    /// `principals`: one matches; `not_principals`: none does; `namespaces`: the peer's
    /// namespace matches one; `not_namespaces`: it matches none. A plaintext peer (no identity)
    /// or one whose identity is not a workload ID matches no principal (a plaintext one not even
    /// `*`) and no namespace, so it matches every `not_` list, as in Istio.
    pub(crate) fn matches(&self, peer: Peer<'_>) -> bool {
        let namespace = match peer {
            Peer::Workload(id) => Some(id.namespace),
            Peer::Plaintext | Peer::Other => None,
        };
        let in_namespaces = |patterns: &[Segment]| {
            namespace.is_some_and(|namespace| patterns.iter().any(|p| p.matches(namespace)))
        };
        (self.principals.is_empty() || self.principals.iter().any(|p| p.matches(peer)))
            && !self.not_principals.iter().any(|p| p.matches(peer))
            && (self.namespaces.is_empty() || in_namespaces(&self.namespaces))
            && !in_namespaces(&self.not_namespaces)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(identity: &str) -> Peer<'_> {
        match Spans::parse(identity) {
            Some(spans) => Peer::Workload(spans.of(identity)),
            None => Peer::Other,
        }
    }

    fn exact(text: &str) -> Segment {
        Segment::Exact(text.to_owned())
    }

    #[test]
    fn workload_ids_parse() {
        let id = "spiffe://cluster.local/ns/shop/sa/orders";
        assert_eq!(
            Spans::parse(id).map(|spans| spans.of(id)),
            Some(WorkloadId {
                trust_domain: "cluster.local",
                namespace: "shop",
                service_account: "orders",
            })
        );
        for bad in [
            "",
            "cluster.local/ns/shop/sa/orders",
            "SPIFFE://cluster.local/ns/shop/sa/orders",
            "spiffe://Cluster.local/ns/shop/sa/orders",
            "spiffe://cluster.local:8443/ns/shop/sa/orders",
            "spiffe://cluster.local/ns/shop/sa/orders/",
            "spiffe://cluster.local/ns/shop/sa/orders/x",
            "spiffe://cluster.local/ns/shop/sa/",
            "spiffe://cluster.local/ns//sa/orders",
            "spiffe:///ns/shop/sa/orders",
            "spiffe://cluster.local/ns/shop/sa/orders?x",
            "spiffe://cluster.local/ns/shop/sa/orders#x",
            "spiffe://cluster.local/ns/../sa/orders",
            "spiffe://cluster.local/ns/sh%6Fp/sa/orders",
            "spiffe://cluster.local/ns/shop/dc/dc1/svc/orders",
            "spiffe://cluster.local/sa/orders/ns/shop",
            "spiffe://cluster.local/ns/shop/sa/ordérs",
            "spiffe://cluster.local",
        ] {
            assert_eq!(Spans::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn principal_forms() {
        let workload = |td: Segment, ns: Segment, sa: Segment| Principal::Workload {
            trust_domain: td,
            namespace: ns,
            service_account: sa,
        };
        let prefix = |text: &str| Segment::Prefix(text.to_owned());
        let suffix = |text: &str| Segment::Suffix(text.to_owned());
        let orders = workload(exact("cluster.local"), exact("shop"), exact("orders"));
        for (text, expected) in [
            ("*", Principal::AnyPeer),
            ("spiffe://cluster.local/ns/shop/sa/orders", orders.clone()),
            ("cluster.local/ns/shop/sa/orders", orders),
            (
                "spiffe://*/ns/shop/sa/*",
                workload(Segment::Any, exact("shop"), Segment::Any),
            ),
            (
                "cluster.local/ns/*/sa/orders",
                workload(exact("cluster.local"), Segment::Any, exact("orders")),
            ),
            (
                "cluster.local/ns/shop/*",
                workload(exact("cluster.local"), exact("shop"), Segment::Any),
            ),
            (
                "cluster.local/ns/shop-*",
                workload(exact("cluster.local"), prefix("shop-"), Segment::Any),
            ),
            (
                "cluster.local/ns/shop/s*",
                workload(exact("cluster.local"), exact("shop"), Segment::Any),
            ),
            (
                "cluster.local/*",
                workload(exact("cluster.local"), Segment::Any, Segment::Any),
            ),
            (
                "spiffe://*",
                workload(Segment::Any, Segment::Any, Segment::Any),
            ),
            (
                "cluster.local/ns/shop/sa/ord*",
                workload(exact("cluster.local"), exact("shop"), prefix("ord")),
            ),
            (
                "*/sa/orders",
                workload(Segment::Any, Segment::Any, exact("orders")),
            ),
            (
                "*-prod/sa/orders",
                workload(Segment::Any, suffix("-prod"), exact("orders")),
            ),
            (
                "*/ns/shop/sa/orders",
                workload(Segment::Any, exact("shop"), exact("orders")),
            ),
            (
                "*.local/ns/shop/sa/orders",
                workload(suffix(".local"), exact("shop"), exact("orders")),
            ),
            (
                "*s/shop/sa/orders",
                workload(Segment::Any, exact("shop"), exact("orders")),
            ),
            (
                "spiffe://*/ns/shop/*",
                workload(Segment::Any, exact("shop"), Segment::Any),
            ),
        ] {
            assert_eq!(Principal::parse(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn principal_errors() {
        for (text, needle) in [
            ("", "the principal is empty"),
            ("cluster.local", "1 `/`-separated part, expected 5"),
            ("cluster.local/ns/shop", "3 `/`-separated parts, expected 5"),
            ("cluster.local/ns/shop/sa/orders/", "6 `/`-separated parts"),
            ("cluster.local/ns//sa/orders", "the namespace is empty"),
            ("/ns/shop/sa/orders", "the trust domain is empty"),
            ("cluster.local/ns/shop/sa/", "the service account is empty"),
            ("spiffe:///ns/shop/sa/orders", "the trust domain is empty"),
            (
                "https://cluster.local/ns/shop/sa/orders",
                "`https://` is not",
            ),
            ("SPIFFE://cluster.local/ns/shop/sa/orders", "in lower case"),
            (
                "spiffe:cluster.local/ns/shop/sa/orders",
                "write `spiffe://`",
            ),
            (
                "cluster.local/ns/shop/sa/orders?x=1",
                "no query or fragment",
            ),
            (
                "cluster.local/ns/shop/sa/orders#frag",
                "no query or fragment",
            ),
            ("cluster.local/ns/sh*p/sa/orders", "`*` may stand for"),
            ("cluster.local/ns/shop*/sa/orders", "`*` may stand for"),
            ("cluster.local/ns/*shop/sa/orders", "`*` may stand for"),
            ("cluster.local/*/shop/sa/orders", "expected `ns`"),
            ("*/shop/*", "expected `ns` where `shop` is"),
            ("**", "`*` may stand for"),
            ("cluster.local/sa/orders/*", "expected `ns`"),
            ("*/ns/orders", "expected `sa`"),
            ("cluster.local/namespaces/shop/sa/orders", "expected `ns`"),
            ("Cluster.local/ns/shop/sa/orders", "lower case"),
            ("cluster.local:8443/ns/shop/sa/orders", "has `:`"),
            ("cluster.local/ns/sh%6Fp/sa/orders", "percent-encoded"),
            ("cluster.local/ns/../sa/orders", "cannot be `..`"),
            ("cluster.local/ns/shop/sa/or ders", "has ` `"),
        ] {
            let err = Principal::parse(text).expect_err(text);
            assert!(err.contains(needle), "{text:?}: {err}");
            if !text.is_empty() {
                assert!(err.starts_with(&format!("`{text}`: ")), "{text:?}: {err}");
            }
            assert!(
                err.contains("e.g. `spiffe://cluster.local/ns/shop/sa/orders`"),
                "{err}"
            );
        }
    }

    #[test]
    fn matching_is_by_segment_and_case_sensitive() {
        let principal = |text: &str| Principal::parse(text).expect(text);
        let matches = |pattern: &str, identity: &str| principal(pattern).matches(peer(identity));
        let orders = "spiffe://cluster.local/ns/shop/sa/orders";
        assert!(matches("cluster.local/ns/shop/sa/orders", orders));
        assert!(!matches("cluster.local/ns/shop/sa/Orders", orders));
        assert!(!matches("cluster.local/ns/shop/sa/order", orders));
        assert!(!matches(
            "cluster.local/ns/shop/sa/orders",
            "spiffe://cluster.local/ns/shop/sa/orders2"
        ));
        assert!(matches("cluster.local/ns/shop/sa/ord*", orders));
        assert!(matches("*/sa/orders", orders));
        assert!(!matches(
            "*/sa/orders",
            "spiffe://cluster.local/ns/orders/sa/web"
        ));
        assert!(matches("*op/sa/orders", orders));
        assert!(!matches(
            "*op/sa/orders",
            "spiffe://cluster.local/ns/shopx/sa/orders"
        ));
        assert!(matches("cluster.local/ns/sh*", orders));
        assert!(!matches(
            "cluster.local/ns/sh*",
            "spiffe://cluster.localx/ns/shop/sa/orders"
        ));
        // The segments of the identity, not its text: a service account named like a path.
        assert!(!matches(
            "*/sa/orders",
            "spiffe://cluster.local/ns/a/sa/b/sa/orders"
        ));
        // Identities that are no workload IDs match no principal, except `*`.
        for other in [
            "spiffe://cluster.local/ns/shop/sa/orders/",
            "spiffe://x/y",
            "dns:orders",
        ] {
            assert!(!matches("spiffe://*", other), "{other}");
            assert!(matches("*", other), "{other}");
        }
        assert!(!principal("*").matches(Peer::Plaintext));
        assert!(!principal("spiffe://*").matches(Peer::Plaintext));
    }

    #[test]
    fn namespace_patterns() {
        let ns = |text: &str| Segment::namespace(text).expect(text);
        assert_eq!(ns("shop"), exact("shop"));
        assert_eq!(ns("*"), Segment::Any);
        assert!(ns("shop-*").matches("shop-eu"));
        assert!(!ns("shop-*").matches("shop"));
        assert!(ns("*-prod").matches("shop-prod"));
        assert!(!ns("*-prod").matches("shop-prod2"));
        for (text, needle) in [
            ("", "the namespace is empty"),
            ("shop/sa/orders", "no `/`"),
            ("sh*p", "`*` may only"),
            ("**", "`*` may only"),
            ("sh op", "has ` `"),
            ("..", "cannot be `..`"),
        ] {
            let err = Segment::namespace(text).expect_err(text);
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }
}
