//! Compiled allow/deny rules and the request facts they match on. Pure: the facts come from a
//! [`RequestFacts`], so the matching is tested natively on a `FakeRequest`.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::net::IpAddr;

use serde_json::Value;
use weft_sdk::facts::RequestFacts;
use weft_sdk::text;

use crate::config;
use crate::jwt::Claims;
use crate::principals::{Peer, SourceMatch, Spans};

/// What rules ask about a request, each fact fetched from it on first use and at most once
/// (every fetch may be a host call): rules ask only for what they test.
pub(crate) struct Facts<'a, R> {
    request: &'a R,
    path: OnceCell<String>,
    method: OnceCell<String>,
    client_ip: OnceCell<Option<IpAddr>>,
    peer_identity: OnceCell<Option<String>>,
    /// Where the segments of the peer identity are, if it is a SPIFFE workload ID.
    workload: OnceCell<Option<Spans>>,
}

impl<'a, R: RequestFacts> Facts<'a, R> {
    pub(crate) fn new(request: &'a R) -> Self {
        Facts {
            request,
            path: OnceCell::new(),
            method: OnceCell::new(),
            client_ip: OnceCell::new(),
            peer_identity: OnceCell::new(),
            workload: OnceCell::new(),
        }
    }

    /// The normalized path, without the query.
    fn path(&self) -> &str {
        self.path
            .get_or_init(|| normalize_path(&self.request.path()))
    }

    /// The method.
    fn method(&self) -> &str {
        self.method
            .get_or_init(|| self.request.method().into_owned())
    }

    /// Every value of header `name`.
    fn header_values(&self, name: &str) -> Vec<Vec<u8>> {
        self.request.header_values(name)
    }

    /// The client's IP address.
    fn client_ip(&self) -> Option<IpAddr> {
        *self.client_ip.get_or_init(|| self.request.client_ip())
    }

    /// The mTLS peer identity.
    fn peer_identity(&self) -> Option<&str> {
        self.peer_identity
            .get_or_init(|| self.request.peer_identity().map(Cow::into_owned))
            .as_deref()
    }

    /// The mTLS peer for `from` conditions, its identity parsed once per request.
    fn peer(&self) -> Peer<'_> {
        let Some(identity) = self.peer_identity().filter(|id| !id.is_empty()) else {
            return Peer::Plaintext;
        };
        match *self.workload.get_or_init(|| Spans::parse(identity)) {
            Some(spans) => Peer::Workload(spans.of(identity)),
            None => Peer::Other,
        }
    }
}

/// Who the request authenticated as.
#[derive(Debug, Clone)]
pub(crate) enum Identity<'a> {
    /// No credentials (only with `allow_missing`).
    Anonymous,
    /// A verified JWT.
    Jwt(&'a Claims),
    /// The API key of this name.
    ApiKey(&'a str),
}

/// Which list a rule is in: it decides how header conditions read headers with several values.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `rules.allow`: a header condition matches the values joined with `,`.
    #[default]
    Allow,
    /// `rules.deny`: a header condition matches the joined values, or any single value.
    Deny,
}

/// A compiled rule: every non-empty condition must match.
#[derive(Debug, Default)]
pub(crate) struct Rule {
    kind: Kind,
    paths: Vec<StringMatch>,
    methods: Vec<String>,
    headers: Vec<HeaderMatch>,
    claims: Vec<ClaimMatch>,
    cidrs: Vec<Cidr>,
    peers: Vec<StringMatch>,
    identities: Vec<String>,
    from: Option<SourceMatch>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StringMatch {
    Exact(String),
    Prefix(String),
}

impl StringMatch {
    fn compile(raw: &config::StringMatch, at: &str) -> Result<StringMatch, String> {
        match (&raw.exact, &raw.prefix) {
            (Some(exact), None) => Ok(StringMatch::Exact(exact.clone())),
            (None, Some(prefix)) => Ok(StringMatch::Prefix(prefix.clone())),
            _ => Err(format!("{at}: give exactly one of `exact` or `prefix`")),
        }
    }

    fn matches(&self, value: &str) -> bool {
        match self {
            StringMatch::Exact(exact) => value == exact,
            StringMatch::Prefix(prefix) => value.starts_with(prefix.as_str()),
        }
    }
}

#[derive(Debug)]
enum HeaderCondition {
    Exact(Vec<u8>),
    Prefix(Vec<u8>),
    Present(bool),
}

#[derive(Debug)]
struct HeaderMatch {
    name: String,
    condition: HeaderCondition,
}

#[derive(Debug)]
struct ClaimMatch {
    path: String,
    /// `scope` and `scp` hold space-separated lists (RFC 8693 §4.2): match words.
    space_separated: bool,
    /// Any of these.
    values: Vec<Value>,
}

/// An IPv4 or IPv6 network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// `10.0.0.0/8`, `2001:db8::/32`, or a single address. Host bits must be zero: `10.0.0.1/8`
    /// is more likely a typo than a network.
    pub(crate) fn parse(text: &str) -> Result<Cidr, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address
            .parse()
            .map_err(|_| format!("`{text}` is not an IP address or CIDR range"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|prefix| *prefix <= max)
                .ok_or_else(|| format!("`{text}`: the prefix length must be 0 to {max}"))?,
        };
        let cidr = Cidr { network, prefix };
        if !cidr.contains(network) || mask(network, prefix) != network {
            return Err(format!(
                "`{text}` has bits set after the /{prefix} prefix; did you mean `{}/{prefix}`?",
                mask(network, prefix)
            ));
        }
        Ok(cidr)
    }

    /// Whether `ip` is in the network. IPv4-mapped IPv6 addresses (`::ffff:10.1.2.3`) count as
    /// their IPv4 address.
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        match (self.network, ip) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                mask(ip, self.prefix) == self.network
            }
            _ => false,
        }
    }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let keep = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((bits & keep).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let keep = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((bits & keep).into())
        }
    }
}

/// Which request facts any rule of a set reads, so the filter fetches nothing else.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Needs {
    pub(crate) path: bool,
    pub(crate) method: bool,
    pub(crate) client_ip: bool,
    pub(crate) peer_identity: bool,
}

impl Rule {
    /// Compile the rule found at config path `at` (`rules.allow[0]`), of list `kind`.
    pub(crate) fn compile(raw: &config::Rule, kind: Kind, at: &str) -> Result<Rule, String> {
        let mut rule = Rule {
            kind,
            ..Rule::default()
        };
        for (i, path) in raw.paths.iter().enumerate() {
            let at = format!("{at}.paths[{i}]");
            let path = StringMatch::compile(path, &at)?;
            let (StringMatch::Exact(text) | StringMatch::Prefix(text)) = &path;
            if !text.starts_with('/') {
                return Err(format!("{at}: a path must start with `/`"));
            }
            rule.paths.push(path);
        }
        for (i, method) in raw.methods.iter().enumerate() {
            if !text::is_token(method) {
                return Err(format!(
                    "{at}.methods[{i}]: `{method}` is not an HTTP method"
                ));
            }
            // Methods are case-sensitive (RFC 9110 §9.1), but `get` in a config is a typo.
            rule.methods.push(method.to_ascii_uppercase());
        }
        for (i, header) in raw.headers.iter().enumerate() {
            let at = format!("{at}.headers[{i}]");
            let name = header_name(&header.name, &format!("{at}.name"))?;
            let condition = match (&header.exact, &header.prefix, header.present) {
                (Some(exact), None, None) => HeaderCondition::Exact(exact.as_bytes().to_vec()),
                (None, Some(prefix), None) => HeaderCondition::Prefix(prefix.as_bytes().to_vec()),
                (None, None, Some(present)) => HeaderCondition::Present(present),
                _ => {
                    return Err(format!(
                        "{at}: give exactly one of `exact`, `prefix` or `present`"
                    ));
                }
            };
            rule.headers.push(HeaderMatch { name, condition });
        }
        for (path, expected) in &raw.claims {
            let at = format!("{at}.claims.{path}");
            if path.is_empty() {
                return Err(format!("{at}: the claim name must not be empty"));
            }
            let values = match expected {
                Value::Array(values) if values.is_empty() => {
                    return Err(format!("{at}: give at least one value"));
                }
                Value::Array(values) => values.clone(),
                other => vec![other.clone()],
            };
            if let Some(bad) = values.iter().position(|v| !is_scalar(v)) {
                return Err(format!(
                    "{at}: values must be strings, numbers or booleans (item {bad} is not)"
                ));
            }
            let last = path.rsplit('.').next().unwrap_or(path);
            rule.claims.push(ClaimMatch {
                path: path.clone(),
                space_separated: last == "scope" || last == "scp",
                values,
            });
        }
        for (i, cidr) in raw.client_cidrs.iter().enumerate() {
            let cidr = Cidr::parse(cidr).map_err(|err| format!("{at}.client_cidrs[{i}]: {err}"))?;
            rule.cidrs.push(cidr);
        }
        for (i, peer) in raw.peer_identities.iter().enumerate() {
            let peer = StringMatch::compile(peer, &format!("{at}.peer_identities[{i}]"))?;
            rule.peers.push(peer);
        }
        for (i, identity) in raw.identities.iter().enumerate() {
            if identity.is_empty() {
                return Err(format!("{at}.identities[{i}]: must not be empty"));
            }
            rule.identities.push(identity.clone());
        }
        if let Some(from) = &raw.from {
            rule.from = Some(SourceMatch::compile(from, &format!("{at}.from"))?);
        }
        if rule.needs() == Needs::default()
            && rule.headers.is_empty()
            && rule.claims.is_empty()
            && rule.identities.is_empty()
        {
            return Err(format!(
                "{at}: a rule needs at least one condition (paths, methods, headers, claims, client_cidrs, peer_identities, from or identities)"
            ));
        }
        Ok(rule)
    }

    /// The request facts this rule reads.
    pub(crate) fn needs(&self) -> Needs {
        Needs {
            path: !self.paths.is_empty(),
            method: !self.methods.is_empty(),
            client_ip: !self.cidrs.is_empty(),
            peer_identity: !self.peers.is_empty() || self.from.is_some(),
        }
    }

    /// Whether the rule matches. The cheapest conditions are tested first.
    pub(crate) fn matches<R: RequestFacts>(
        &self,
        facts: &Facts<'_, R>,
        identity: &Identity<'_>,
    ) -> bool {
        if !self.identities.is_empty() {
            let Identity::ApiKey(name) = identity else {
                return false;
            };
            if !self.identities.iter().any(|known| known == name) {
                return false;
            }
        }
        if !self.claims.is_empty() {
            let Identity::Jwt(claims) = identity else {
                return false;
            };
            if !self.claims.iter().all(|c| c.matches(claims)) {
                return false;
            }
        }
        if !self.methods.is_empty() {
            let method = facts.method();
            if !self.methods.iter().any(|m| m == method) {
                return false;
            }
        }
        if !self.paths.is_empty() {
            let path = facts.path();
            if !self.paths.iter().any(|m| m.matches(path)) {
                return false;
            }
        }
        if !self.cidrs.is_empty() {
            let Some(ip) = facts.client_ip() else {
                return false;
            };
            if !self.cidrs.iter().any(|cidr| cidr.contains(ip)) {
                return false;
            }
        }
        if !self.peers.is_empty() {
            let Some(peer) = facts.peer_identity() else {
                return false;
            };
            if !self.peers.iter().any(|m| m.matches(peer)) {
                return false;
            }
        }
        if let Some(from) = &self.from
            && !from.matches(facts.peer())
        {
            return false;
        }
        self.headers.iter().all(|h| h.matches(facts, self.kind))
    }
}

impl HeaderMatch {
    /// A header with several values is matched as one value, the values joined with `,` (as
    /// Envoy does since CVE-2020-25017, and as RFC 9110 §5.3 says they mean): `x-role: user` and
    /// `x-role: admin` is `user,admin`, which `exact: admin` does not match, so an extra value
    /// cannot satisfy an allow rule. A deny rule matches the joined value or any of its
    /// comma-separated elements, so that neither splitting a value nor adding one (for an
    /// upstream that reads only one of them) slips past it.
    fn matches<R: RequestFacts>(&self, facts: &Facts<'_, R>, kind: Kind) -> bool {
        let values = facts.header_values(&self.name);
        let condition = |value: &[u8]| match &self.condition {
            HeaderCondition::Present(_) => true,
            HeaderCondition::Exact(exact) => value == exact.as_slice(),
            HeaderCondition::Prefix(prefix) => value.starts_with(prefix),
        };
        if let HeaderCondition::Present(present) = self.condition {
            return values.is_empty() != present;
        }
        let joined = match values.as_slice() {
            [] => return false,
            [value] => Cow::Borrowed(value),
            values => Cow::Owned(values.join(&b","[..])),
        };
        condition(&joined)
            || (kind == Kind::Deny
                && joined
                    .split(|b| *b == b',')
                    .any(|element| condition(element.trim_ascii())))
    }
}

impl ClaimMatch {
    fn matches(&self, claims: &Claims) -> bool {
        let Some(actual) = claims.get(&self.path) else {
            return false;
        };
        self.values.iter().any(|expected| {
            if scalar_eq(actual, expected) {
                return true;
            }
            match actual {
                Value::Array(items) => items.iter().any(|item| scalar_eq(item, expected)),
                Value::String(words) if self.space_separated => match expected {
                    Value::String(word) => words.split_ascii_whitespace().any(|w| w == word),
                    _ => false,
                },
                _ => false,
            }
        })
    }
}

fn is_scalar(value: &Value) -> bool {
    matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_))
}

/// Equal scalars; a string also equals a number or boolean with the same text (`"42"` and `42`),
/// since YAML quoting is easy to get either way.
fn scalar_eq(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::String(a), Value::String(b)) => a == b,
        (Value::Number(a), Value::Number(b)) => a == b,
        (Value::Bool(a), Value::Bool(b)) => a == b,
        (Value::String(text), Value::Number(number))
        | (Value::Number(number), Value::String(text)) => text
            .parse::<serde_json::Number>()
            .is_ok_and(|parsed| parsed == *number),
        (Value::String(text), Value::Bool(b)) | (Value::Bool(b), Value::String(text)) => {
            text == if *b { "true" } else { "false" }
        }
        _ => false,
    }
}

/// A valid header name, lower-cased, that the filter may also set or remove: not one the proxy
/// manages ([`text::MANAGED_HEADERS`]). Errors name `field`.
pub(crate) fn header_name(name: &str, field: &str) -> Result<String, String> {
    if !text::is_header_name(name) {
        return Err(format!("{field}: `{name}` is not a valid header name"));
    }
    let name = name.to_ascii_lowercase();
    if text::is_managed_header(&name) {
        return Err(format!("{field}: `{name}` is managed by the proxy"));
    }
    Ok(name)
}

/// The path rules match on: the query dropped, `%XX` escapes of unreserved characters decoded
/// (`/%61dmin` is `/admin`), repeated slashes merged and `.`/`..` segments resolved, so that
/// spellings the upstream treats as the same path cannot slip past a deny rule. Escaped slashes
/// (`%2F`) stay escaped: they are not separators to most upstreams.
pub(crate) fn normalize_path(raw: &str) -> String {
    let path = raw.split(['?', '#']).next().unwrap_or("");
    let decoded = text::percent_decode_unreserved(path);
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    let mut normalized = String::with_capacity(decoded.len() + 1);
    for segment in &segments {
        normalized.push('/');
        normalized.push_str(segment);
    }
    // Keep a trailing slash: `/api/` and `/api` differ to prefix rules ending in `/`.
    let trailing = decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
    if normalized.is_empty() || (trailing && !segments.is_empty()) {
        normalized.push('/');
    }
    normalized
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parsing_and_matching() {
        let net = Cidr::parse("10.0.0.0/8").expect("valid");
        assert!(net.contains("10.200.3.4".parse().expect("ip")));
        assert!(!net.contains("11.0.0.1".parse().expect("ip")));
        assert!(
            net.contains("::ffff:10.1.2.3".parse().expect("ip")),
            "IPv4-mapped"
        );
        assert!(!net.contains("::1".parse().expect("ip")));

        let v6 = Cidr::parse("2001:db8::/32").expect("valid");
        assert!(v6.contains("2001:db8:1::7".parse().expect("ip")));
        assert!(!v6.contains("2001:db9::1".parse().expect("ip")));
        assert!(!v6.contains("10.0.0.1".parse().expect("ip")));

        let all = Cidr::parse("0.0.0.0/0").expect("valid");
        assert!(all.contains("203.0.113.9".parse().expect("ip")));
        let one = Cidr::parse("192.0.2.7").expect("bare address");
        assert!(one.contains("192.0.2.7".parse().expect("ip")));
        assert!(!one.contains("192.0.2.8".parse().expect("ip")));
        assert!(
            Cidr::parse("::/0")
                .expect("valid")
                .contains("::1".parse().expect("ip"))
        );
    }

    #[test]
    fn cidr_errors() {
        for (text, needle) in [
            ("10.0.0.0/33", "prefix length must be 0 to 32"),
            ("::/129", "0 to 128"),
            ("10.0.0.1/8", "did you mean `10.0.0.0/8`"),
            ("banana", "not an IP address"),
            ("10.0.0.0/", "prefix length"),
            ("10.0.0.0/-1", "prefix length"),
        ] {
            let err = Cidr::parse(text).expect_err(text);
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn path_normalization() {
        for (raw, normalized) in [
            ("/", "/"),
            ("", "/"),
            ("/api/users?x=1", "/api/users"),
            ("/api/", "/api/"),
            ("//admin", "/admin"),
            ("/a/./b/../admin", "/a/admin"),
            ("/../../admin", "/admin"),
            ("/%61dmin", "/admin"),
            ("/%2e%2e/admin", "/admin"),
            ("/a%2Fb", "/a%2Fb"),
            ("/a/..", "/"),
            ("/a/b/..", "/a/"),
            ("/x%zz", "/x%zz"),
            ("/x%", "/x%"),
            ("/é/%C3%A9", "/é/%C3%A9"),
        ] {
            assert_eq!(normalize_path(raw), normalized, "{raw:?}");
        }
    }

    #[test]
    fn header_names() {
        assert_eq!(header_name("X-User", "f"), Ok("x-user".to_owned()));
        assert!(
            header_name("bad name", "f")
                .expect_err("space")
                .starts_with("f: ")
        );
        assert!(header_name("", "f").is_err());
        assert!(
            header_name("Host", "f")
                .expect_err("reserved")
                .contains("managed by the proxy")
        );
    }

    #[test]
    fn the_peer_identity_is_parsed_once() {
        use crate::principals::{Peer, WorkloadId};
        let request = weft_sdk::facts::FakeRequest::get("/")
            .with_peer_identity("spiffe://cluster.local/ns/shop/sa/orders");
        let facts = Facts::new(&request);
        let orders = Peer::Workload(WorkloadId {
            trust_domain: "cluster.local",
            namespace: "shop",
            service_account: "orders",
        });
        assert_eq!(facts.peer(), orders);
        assert!(facts.workload.get().is_some_and(Option::is_some), "cached");
        assert_eq!(facts.peer(), orders);
        assert_eq!(request.reads(), ["peer_identity"]);

        let other = weft_sdk::facts::FakeRequest::get("/").with_peer_identity("spiffe://x/y");
        assert_eq!(Facts::new(&other).peer(), Peer::Other);
        let empty = weft_sdk::facts::FakeRequest::get("/").with_peer_identity("");
        assert_eq!(Facts::new(&empty).peer(), Peer::Plaintext);
        let plaintext = weft_sdk::facts::FakeRequest::get("/");
        assert_eq!(Facts::new(&plaintext).peer(), Peer::Plaintext);
    }

    #[test]
    fn scalar_equality() {
        use serde_json::json;
        assert!(scalar_eq(&json!("a"), &json!("a")));
        assert!(scalar_eq(&json!(42), &json!("42")));
        assert!(scalar_eq(&json!("true"), &json!(true)));
        assert!(!scalar_eq(&json!(42), &json!("042")));
        assert!(!scalar_eq(&json!({"a": 1}), &json!("{\"a\":1}")));
    }
}
