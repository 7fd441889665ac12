//! The request path: find the first rule whose match holds, reading from the request only what
//! the rules need, then carry out its action (choose the upstream, edit headers).
//!
//! The request is reached through the SDK's [`RequestFacts`] and [`RequestEdits`] so that this
//! logic runs natively in unit tests, on a [`weft_sdk::facts::FakeRequest`]. Every call crosses
//! into the proxy, so the router makes as few as it can.

use regex::Regex;
use weft_sdk::EditError;
use weft_sdk::facts::{RequestEdits, RequestFacts};
use weft_sdk::text::{cookie_value, form_decode, path_without_query};

use crate::text::{as_text, query_pairs, scale, stable_hash};

/// The compiled configuration.
#[derive(Debug)]
pub(crate) struct Router {
    /// Tried in order.
    pub(crate) rules: Vec<Rule>,
    /// For requests no rule matched.
    pub(crate) default: Option<Action>,
    /// The headers the rules read, by slot; see [`Facts::header`].
    pub(crate) header_names: Vec<String>,
}

/// A named match and its action.
#[derive(Debug)]
pub(crate) struct Rule {
    /// The `rule` metric label.
    pub(crate) name: String,
    pub(crate) matcher: Match,
    pub(crate) action: Action,
}

/// Conditions that must all hold; each empty part holds for every request.
#[derive(Debug, Default)]
pub(crate) struct Match {
    pub(crate) path: Option<PathMatch>,
    /// Any of these; empty for any method.
    pub(crate) methods: Vec<String>,
    pub(crate) headers: Vec<HeaderMatch>,
    pub(crate) query: Vec<QueryMatch>,
}

/// A condition on the path without its query.
#[derive(Debug)]
pub(crate) enum PathMatch {
    Exact(String),
    Prefix(String),
    /// Anchored at both ends.
    Regex(Pattern),
}

/// A compiled regex (anchored at both ends) and the most bytes it may scan per request.
#[derive(Debug)]
pub(crate) struct Pattern {
    pub(crate) regex: Regex,
    /// `max_regex_bytes`: a value longer than this does not match, and one condition scans at
    /// most this many bytes over all the values it tests.
    pub(crate) max_bytes: usize,
}

impl Pattern {
    /// Whether any of `values` matches, in order. A value longer than what is left of
    /// `max_bytes` is not scanned and does not match, so the time one condition takes is
    /// bounded whatever the request holds: a client with a huge value turns the condition
    /// into a non-match, never into a filter timeout.
    pub(crate) fn any_match<V: AsRef<[u8]>>(&self, values: impl IntoIterator<Item = V>) -> bool {
        let mut left = self.max_bytes;
        for value in values {
            let value = value.as_ref();
            if value.len() > left {
                continue;
            }
            left -= value.len();
            if self.regex.is_match(&as_text(value)) {
                return true;
            }
        }
        false
    }
}

/// A condition on the values of the header in a slot.
#[derive(Debug)]
pub(crate) struct HeaderMatch {
    pub(crate) slot: usize,
    pub(crate) test: ValueTest,
}

/// A condition on the decoded values of query parameter `name`.
#[derive(Debug)]
pub(crate) struct QueryMatch {
    /// Compared with the decoded parameter names.
    pub(crate) name: String,
    pub(crate) test: ValueTest,
}

/// A condition on the values of a header or query parameter: `Present(false)` holds when there
/// are none; the others hold when any value passes.
#[derive(Debug)]
pub(crate) enum ValueTest {
    Exact(String),
    Prefix(String),
    /// Anchored at both ends.
    Regex(Pattern),
    Present(bool),
}

/// What a rule does with the requests it matched.
#[derive(Debug)]
pub(crate) struct Action {
    pub(crate) target: Target,
    pub(crate) request_headers: HeaderEdits,
    /// Appended to the response, in order.
    pub(crate) response_headers: Vec<(String, String)>,
}

/// Where a matched request goes.
#[derive(Debug)]
pub(crate) enum Target {
    /// To the route's upstream (or whatever an earlier filter chose).
    Keep,
    Upstream(String),
    Split(Split),
}

/// A weighted choice between upstreams.
#[derive(Debug)]
pub(crate) struct Split {
    /// Each upstream with the running total of the weights up to and including its own: a
    /// request at position `p` in `0..total` goes to the first bucket whose end is above `p`.
    pub(crate) buckets: Vec<(String, u64)>,
    /// The sum of the weights, above 0.
    pub(crate) total: u64,
    pub(crate) sticky: Option<Sticky>,
    /// The one upstream with a weight above 0, when only one has.
    pub(crate) only: Option<String>,
}

/// Where the value that pins a client to one side of a split comes from.
#[derive(Debug)]
pub(crate) enum Sticky {
    /// The first value of the header in this slot.
    Header(usize),
    /// Cookie `name` in the `cookie` header(s), read through this slot.
    Cookie { slot: usize, name: String },
}

/// Request header edits, applied in the order remove, set, add, as Envoy does: a header both
/// removed and set ends up set, with the configured value only.
#[derive(Debug, Default)]
pub(crate) struct HeaderEdits {
    pub(crate) remove: Vec<String>,
    pub(crate) set: Vec<(String, String)>,
    pub(crate) add: Vec<(String, String)>,
}

/// What the router decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decision<'r> {
    /// The name of the rule that matched, `default`, or `none`.
    pub(crate) rule: &'r str,
    /// The upstream the router chose, if it chose one.
    pub(crate) upstream: Option<&'r str>,
}

/// The `rule` label when `default` decided.
pub(crate) const DEFAULT_RULE: &str = "default";
/// The `rule` label when nothing matched and there is no `default`.
pub(crate) const NO_RULE: &str = "none";

/// Per-request lookups of the request, each done at most once and only when a rule needs it.
pub(crate) struct Facts<'a, R: ?Sized> {
    request: &'a R,
    names: &'a [String],
    method: Option<String>,
    path: Option<String>,
    /// Values of `names[slot]`, once fetched. Borrowed so that the filter can reuse the buffer.
    headers: &'a mut Vec<Option<Vec<Vec<u8>>>>,
}

impl<'a, R: RequestFacts + ?Sized> Facts<'a, R> {
    /// Lookups of `request` for the headers `names`, keeping header values in `scratch`.
    pub(crate) fn new(
        request: &'a R,
        names: &'a [String],
        scratch: &'a mut Vec<Option<Vec<Vec<u8>>>>,
    ) -> Self {
        scratch.clear();
        scratch.resize_with(names.len(), || None);
        Facts {
            request,
            names,
            method: None,
            path: None,
            headers: scratch,
        }
    }

    fn method(&mut self) -> &str {
        self.method
            .get_or_insert_with(|| self.request.method().into_owned())
    }

    /// Path and query.
    fn target(&mut self) -> &str {
        self.path
            .get_or_insert_with(|| self.request.path().into_owned())
    }

    /// The values of the header in `slot`.
    fn header(&mut self, slot: usize) -> &[Vec<u8>] {
        let (Some(entry), Some(name)) = (self.headers.get_mut(slot), self.names.get(slot)) else {
            // Slots come from the same config as `names`; never reached.
            return &[];
        };
        entry.get_or_insert_with(|| self.request.header_values(name))
    }
}

impl Router {
    /// Find the rule for the request behind `facts` and carry out its action. `random` is called
    /// only for a split without a sticky value; `report` hears about edits the proxy refused
    /// (which validation in [`Router::new`] should make impossible).
    pub(crate) fn route<R: RequestFacts + RequestEdits + ?Sized>(
        &self,
        facts: &mut Facts<'_, R>,
        random: impl FnOnce() -> u64,
        report: impl FnMut(&str, &str, EditError),
    ) -> Decision<'_> {
        let found = self
            .rules
            .iter()
            .find(|rule| rule.matcher.matches(facts))
            .map(|rule| (rule.name.as_str(), &rule.action))
            .or_else(|| self.default.as_ref().map(|action| (DEFAULT_RULE, action)));
        let Some((rule, action)) = found else {
            return Decision {
                rule: NO_RULE,
                upstream: None,
            };
        };
        let upstream = match &action.target {
            Target::Keep => None,
            Target::Upstream(upstream) => Some(upstream.as_str()),
            Target::Split(split) => Some(split.choose(facts, random)),
        };
        action.apply(facts.request, upstream, report);
        Decision { rule, upstream }
    }
}

impl Match {
    fn matches<R: RequestFacts + ?Sized>(&self, facts: &mut Facts<'_, R>) -> bool {
        if let Some(path) = &self.path
            && !path.matches(path_without_query(facts.target()))
        {
            return false;
        }
        if !self.methods.is_empty() {
            let method = facts.method();
            if !self.methods.iter().any(|m| m == method) {
                return false;
            }
        }
        if !self
            .headers
            .iter()
            .all(|header| header.test.matches_values(facts.header(header.slot)))
        {
            return false;
        }
        if self.query.is_empty() {
            return true;
        }
        let target = facts.target();
        self.query.iter().all(|param| param.matches(target))
    }
}

impl PathMatch {
    fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(exact) => path == exact,
            PathMatch::Prefix(prefix) => path.starts_with(prefix.as_str()),
            PathMatch::Regex(pattern) => pattern.any_match([path]),
        }
    }
}

impl ValueTest {
    fn matches_values(&self, values: &[Vec<u8>]) -> bool {
        self.matches_any(values.iter().map(Vec::as_slice))
    }

    /// Whether any of `values` passes (`Present`: whether there is one, or none).
    fn matches_any<V: AsRef<[u8]>>(&self, mut values: impl Iterator<Item = V>) -> bool {
        match self {
            ValueTest::Present(present) => values.next().is_some() == *present,
            ValueTest::Exact(exact) => values.any(|value| value.as_ref() == exact.as_bytes()),
            ValueTest::Prefix(prefix) => {
                values.any(|value| value.as_ref().starts_with(prefix.as_bytes()))
            }
            ValueTest::Regex(pattern) => pattern.any_match(values),
        }
    }
}

impl QueryMatch {
    fn matches(&self, target: &str) -> bool {
        let values = query_pairs(target)
            .filter(|(name, _)| *form_decode(name) == *self.name.as_bytes())
            .map(|(_, value)| form_decode(value));
        self.test.matches_any(values)
    }
}

impl Split {
    /// The upstream for this request: by the hash of its sticky value when it has one, else at
    /// random.
    fn choose<R: RequestFacts + ?Sized>(
        &self,
        facts: &mut Facts<'_, R>,
        random: impl FnOnce() -> u64,
    ) -> &str {
        if let Some(only) = &self.only {
            // Nothing to choose (a drained split): no lookups, no randomness.
            return only;
        }
        let sticky_value = match &self.sticky {
            None => None,
            Some(Sticky::Header(slot)) => facts.header(*slot).first().map(Vec::as_slice),
            Some(Sticky::Cookie { slot, name }) => facts
                .header(*slot)
                .iter()
                .find_map(|value| cookie_value(value, name)),
        };
        let x = match sticky_value {
            // An empty value identifies nobody: treat it as absent.
            Some(value) if !value.is_empty() => stable_hash(value),
            _ => random(),
        };
        self.pick(scale(x, self.total))
    }

    /// The upstream at `position` in `0..total`.
    fn pick(&self, position: u64) -> &str {
        self.buckets
            .iter()
            .find(|(_, end)| position < *end)
            .or(self.buckets.last())
            .map_or("", |(upstream, _)| upstream.as_str())
    }
}

impl Action {
    fn apply<R: RequestEdits + ?Sized>(
        &self,
        request: &R,
        upstream: Option<&str>,
        mut report: impl FnMut(&str, &str, EditError),
    ) {
        if let Some(upstream) = upstream
            && let Err(error) = request.set_upstream(upstream)
        {
            report("set upstream", upstream, error);
        }
        let edits = &self.request_headers;
        for name in &edits.remove {
            if let Err(error) = request.remove_header(name) {
                report("remove request header", name, error);
            }
        }
        for (name, value) in &edits.set {
            if let Err(error) = request.set_header(name, value.as_bytes()) {
                report("set request header", name, error);
            }
        }
        for (name, value) in &edits.add {
            if let Err(error) = request.append_header(name, value.as_bytes()) {
                report("add request header", name, error);
            }
        }
        for (name, value) in &self.response_headers {
            if let Err(error) = request.add_response_header(name, value.as_bytes()) {
                report("add response header", name, error);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use weft_sdk::facts::FakeRequest;

    use super::*;
    use crate::config::Config;

    fn router(json: serde_json::Value) -> Router {
        let config: Config = serde_json::from_value(json).unwrap();
        Router::new(config).unwrap()
    }

    /// Route `request`, with `random` as the random source; the decision as owned strings.
    fn route_with(router: &Router, request: &FakeRequest, random: u64) -> (String, Option<String>) {
        let mut scratch = Vec::new();
        let mut facts = Facts::new(request, &router.header_names, &mut scratch);
        let decision = router.route(
            &mut facts,
            || random,
            |what, name, error| panic!("{what} {name}: {error}"),
        );
        (
            decision.rule.to_owned(),
            decision.upstream.map(str::to_owned),
        )
    }

    fn route(router: &Router, request: &FakeRequest) -> (String, Option<String>) {
        route_with(router, request, 0)
    }

    fn rule_of(router: &Router, request: FakeRequest) -> String {
        route(router, &request).0
    }

    /// One rule named `hit` with `matcher`.
    fn single(matcher: serde_json::Value) -> Router {
        router(
            serde_json::json!({ "rules": [{ "name": "hit", "match": matcher, "upstream": "u" }] }),
        )
    }

    #[test]
    fn path_matches_without_the_query() {
        let exact = single(serde_json::json!({ "path": { "exact": "/api" } }));
        assert_eq!(rule_of(&exact, FakeRequest::new("GET", "/api")), "hit");
        assert_eq!(rule_of(&exact, FakeRequest::new("GET", "/api?x=1")), "hit");
        assert_eq!(rule_of(&exact, FakeRequest::new("GET", "/api/")), "none");
        assert_eq!(rule_of(&exact, FakeRequest::new("GET", "/API")), "none");

        let prefix = single(serde_json::json!({ "path": { "prefix": "/api/" } }));
        assert_eq!(
            rule_of(&prefix, FakeRequest::new("GET", "/api/users")),
            "hit"
        );
        assert_eq!(rule_of(&prefix, FakeRequest::new("GET", "/api?/")), "none");
        assert_eq!(rule_of(&prefix, FakeRequest::new("GET", "/apix/")), "none");

        let regex = single(serde_json::json!({ "path": { "regex": "/users/[0-9]+" } }));
        assert_eq!(
            rule_of(&regex, FakeRequest::new("GET", "/users/42?a=b")),
            "hit"
        );
        // Anchored: the whole path must match.
        assert_eq!(
            rule_of(&regex, FakeRequest::new("GET", "/users/42/x")),
            "none"
        );
        assert_eq!(
            rule_of(&regex, FakeRequest::new("GET", "/v1/users/42")),
            "none"
        );
        let alternation = single(serde_json::json!({ "path": { "regex": "/a|/ab" } }));
        assert_eq!(rule_of(&alternation, FakeRequest::new("GET", "/ab")), "hit");
    }

    #[test]
    fn methods_match_any_listed() {
        let router = single(serde_json::json!({ "methods": ["GET", "POST"] }));
        assert_eq!(rule_of(&router, FakeRequest::new("POST", "/")), "hit");
        assert_eq!(rule_of(&router, FakeRequest::new("GET", "/")), "hit");
        assert_eq!(rule_of(&router, FakeRequest::new("DELETE", "/")), "none");
    }

    #[test]
    fn header_tests() {
        let exact =
            single(serde_json::json!({ "headers": [{ "name": "X-Beta", "exact": "true" }] }));
        assert_eq!(
            rule_of(
                &exact,
                FakeRequest::new("GET", "/").with_header("x-beta", "true")
            ),
            "hit"
        );
        assert_eq!(
            rule_of(
                &exact,
                FakeRequest::new("GET", "/").with_header("x-beta", "TRUE")
            ),
            "none"
        );
        assert_eq!(rule_of(&exact, FakeRequest::new("GET", "/")), "none");
        assert_eq!(
            rule_of(
                &exact,
                FakeRequest::new("GET", "/")
                    .with_header("x-beta", "no")
                    .with_header("x-beta", "true")
            ),
            "hit",
            "any value of a repeated header"
        );

        let prefix =
            single(serde_json::json!({ "headers": [{ "name": "x-tenant", "prefix": "acme-" }] }));
        assert_eq!(
            rule_of(
                &prefix,
                FakeRequest::new("GET", "/").with_header("x-tenant", "acme-1")
            ),
            "hit"
        );
        assert_eq!(
            rule_of(
                &prefix,
                FakeRequest::new("GET", "/").with_header("x-tenant", "acm")
            ),
            "none"
        );

        let regex = single(serde_json::json!({ "headers": [{ "name": "x-v", "regex": "v[23]" }] }));
        assert_eq!(
            rule_of(
                &regex,
                FakeRequest::new("GET", "/").with_header("x-v", "v3")
            ),
            "hit"
        );
        assert_eq!(
            rule_of(
                &regex,
                FakeRequest::new("GET", "/").with_header("x-v", "v33")
            ),
            "none"
        );
        assert_eq!(
            rule_of(
                &regex,
                FakeRequest::new("GET", "/").with_header("x-v", b"v2\xff")
            ),
            "none",
            "invalid UTF-8 is matched lossily, without a panic"
        );

        let present =
            single(serde_json::json!({ "headers": [{ "name": "x-debug", "present": true }] }));
        assert_eq!(
            rule_of(
                &present,
                FakeRequest::new("GET", "/").with_header("x-debug", "")
            ),
            "hit"
        );
        assert_eq!(rule_of(&present, FakeRequest::new("GET", "/")), "none");

        let absent =
            single(serde_json::json!({ "headers": [{ "name": "x-debug", "present": false }] }));
        assert_eq!(rule_of(&absent, FakeRequest::new("GET", "/")), "hit");
        assert_eq!(
            rule_of(
                &absent,
                FakeRequest::new("GET", "/").with_header("x-debug", "1")
            ),
            "none"
        );
    }

    #[test]
    fn query_tests_decode_names_and_values() {
        let exact =
            single(serde_json::json!({ "query": [{ "name": "user name", "exact": "a&b c" }] }));
        assert_eq!(
            rule_of(&exact, FakeRequest::new("GET", "/?user%20name=a%26b+c")),
            "hit"
        );
        assert_eq!(
            rule_of(&exact, FakeRequest::new("GET", "/?user+name=a%26b%20c")),
            "hit"
        );
        assert_eq!(
            rule_of(&exact, FakeRequest::new("GET", "/?user%20name=a&b=c")),
            "none"
        );
        assert_eq!(rule_of(&exact, FakeRequest::new("GET", "/")), "none");

        let version = single(serde_json::json!({ "query": [{ "name": "version", "exact": "2" }] }));
        assert_eq!(
            rule_of(&version, FakeRequest::new("GET", "/?a=1&version=2")),
            "hit"
        );
        assert_eq!(
            rule_of(&version, FakeRequest::new("GET", "/?version=1&version=2")),
            "hit"
        );
        assert_eq!(
            rule_of(&version, FakeRequest::new("GET", "/?version=20")),
            "none"
        );
        assert_eq!(
            rule_of(&version, FakeRequest::new("GET", "/?xversion=2")),
            "none"
        );

        let regex = single(serde_json::json!({ "query": [{ "name": "v", "regex": "[0-9]+" }] }));
        assert_eq!(
            rule_of(&regex, FakeRequest::new("GET", "/?v=%31%32")),
            "hit"
        );
        assert_eq!(rule_of(&regex, FakeRequest::new("GET", "/?v=1x")), "none");

        let prefix = single(serde_json::json!({ "query": [{ "name": "tag", "prefix": "beta" }] }));
        assert_eq!(
            rule_of(&prefix, FakeRequest::new("GET", "/?tag=beta-2")),
            "hit"
        );

        let present =
            single(serde_json::json!({ "query": [{ "name": "debug", "present": true }] }));
        assert_eq!(rule_of(&present, FakeRequest::new("GET", "/?debug")), "hit");
        assert_eq!(
            rule_of(&present, FakeRequest::new("GET", "/?debug=")),
            "hit"
        );
        assert_eq!(
            rule_of(&present, FakeRequest::new("GET", "/?debugging=1")),
            "none"
        );
        let absent =
            single(serde_json::json!({ "query": [{ "name": "debug", "present": false }] }));
        assert_eq!(rule_of(&absent, FakeRequest::new("GET", "/?x=1")), "hit");
        assert_eq!(rule_of(&absent, FakeRequest::new("GET", "/?debug")), "none");

        // Malformed escapes do not panic and match literally.
        let literal = single(serde_json::json!({ "query": [{ "name": "q", "exact": "100%" }] }));
        assert_eq!(
            rule_of(&literal, FakeRequest::new("GET", "/?q=100%")),
            "hit"
        );
        assert_eq!(
            rule_of(&literal, FakeRequest::new("GET", "/?q=100%%zz&&==&")),
            "none"
        );
    }

    #[test]
    fn all_conditions_of_a_rule_must_hold() {
        let router = single(serde_json::json!({
            "path": { "prefix": "/api/" },
            "methods": ["GET"],
            "headers": [{ "name": "x-beta", "exact": "true" }],
            "query": [{ "name": "v", "exact": "2" }]
        }));
        let full = || FakeRequest::new("GET", "/api/x?v=2").with_header("x-beta", "true");
        assert_eq!(rule_of(&router, full()), "hit");
        assert_eq!(
            rule_of(&router, FakeRequest::new("GET", "/api/x?v=2")),
            "none"
        );
        assert_eq!(
            rule_of(
                &router,
                FakeRequest::new("POST", "/api/x?v=2").with_header("x-beta", "true")
            ),
            "none"
        );
        assert_eq!(
            rule_of(
                &router,
                FakeRequest::new("GET", "/api/x?v=3").with_header("x-beta", "true")
            ),
            "none"
        );
        assert_eq!(
            rule_of(
                &router,
                FakeRequest::new("GET", "/web/x?v=2").with_header("x-beta", "true")
            ),
            "none"
        );
    }

    #[test]
    fn first_match_wins_then_default_then_none() {
        let config = serde_json::json!({ "rules": [
            { "name": "beta", "match": { "headers": [{ "name": "x-beta", "present": true }] }, "upstream": "beta" },
            { "name": "api", "match": { "path": { "prefix": "/api" } }, "upstream": "api" },
            { "name": "beta-api", "match": { "path": { "prefix": "/api" }, "headers": [{ "name": "x-beta", "present": true }] }, "upstream": "never" }
        ] });
        let without_default = router(config.clone());
        let request = || FakeRequest::new("GET", "/api/x").with_header("x-beta", "1");
        assert_eq!(
            route(&without_default, &request()),
            ("beta".into(), Some("beta".into()))
        );
        assert_eq!(
            route(&without_default, &FakeRequest::new("GET", "/api/x")),
            ("api".into(), Some("api".into()))
        );
        let unmatched = FakeRequest::new("GET", "/web");
        assert_eq!(route(&without_default, &unmatched), ("none".into(), None));
        assert_eq!(unmatched.upstream(), None, "the route's upstream stays");

        let mut with_default = config;
        with_default["default"] = serde_json::json!({ "upstream": "fallback" });
        let with_default = router(with_default);
        let unmatched = FakeRequest::new("GET", "/web");
        assert_eq!(
            route(&with_default, &unmatched),
            ("default".into(), Some("fallback".into()))
        );
        assert_eq!(unmatched.upstream().as_deref(), Some("fallback"));
    }

    #[test]
    fn an_empty_match_matches_everything() {
        let router = router(serde_json::json!({ "rules": [{ "name": "all", "upstream": "a" }] }));
        assert_eq!(
            rule_of(&router, FakeRequest::new("PATCH", "/anything?x")),
            "all"
        );
    }

    #[test]
    fn only_the_needed_lookups_are_made() {
        let router = router(serde_json::json!({ "rules": [
            { "match": { "headers": [{ "name": "x-a", "exact": "1" }] }, "upstream": "a" },
            { "match": { "headers": [{ "name": "x-a", "exact": "2" }, { "name": "x-b", "present": true }] }, "upstream": "b" },
            { "match": { "path": { "prefix": "/c" }, "query": [{ "name": "q", "present": true }] }, "upstream": "c" },
            { "match": { "headers": [{ "name": "x-d", "present": true }] }, "upstream": "d" }
        ] }));
        // Rule 0 decides: one header lookup, no path, no method.
        let request = FakeRequest::new("GET", "/").with_header("x-a", "1");
        assert_eq!(route(&router, &request).1.as_deref(), Some("a"));
        assert_eq!(request.reads(), ["header x-a"]);

        // Nothing matches: x-a once (shared by rules 0 and 1), x-b, the path once (shared by the
        // path and query conditions), x-d.
        let request = FakeRequest::new("GET", "/c?r=1").with_header("x-a", "2");
        assert_eq!(route(&router, &request).1, None);
        assert_eq!(
            request.reads(),
            ["header x-a", "header x-b", "path", "header x-d"]
        );
    }

    #[test]
    fn header_edits_and_response_headers() {
        let router = router(serde_json::json!({ "rules": [{
            "match": { "headers": [{ "name": "x-beta", "present": true }] },
            "upstream": "beta",
            "request_headers": {
                "add": { "x-routed-by": "header-router", "x-multi": "b" },
                "set": { "x-env": "beta", "x-internal": "ours" },
                "remove": ["x-internal", "x-absent"]
            },
            "response_headers": { "add": { "x-upstream-choice": "beta" } }
        }] }));
        let request = FakeRequest::new("GET", "/")
            .with_header("x-beta", "1")
            .with_header("x-env", "prod")
            .with_header("x-env", "prod2")
            .with_header("x-internal", "secret")
            .with_header("x-multi", "a");
        assert_eq!(route(&router, &request).1.as_deref(), Some("beta"));
        assert_eq!(
            request.header_texts("x-env"),
            ["beta"],
            "set replaces every value"
        );
        assert_eq!(
            request.header_texts("x-internal"),
            ["ours"],
            "remove, then set"
        );
        assert_eq!(request.header_texts("x-multi"), ["a", "b"], "add appends");
        assert_eq!(request.header_texts("x-routed-by"), ["header-router"]);
        assert_eq!(
            request.response_headers(),
            [("x-upstream-choice".to_owned(), b"beta".to_vec())]
        );

        // No match: nothing is touched.
        let request = FakeRequest::new("GET", "/").with_header("x-internal", "secret");
        route(&router, &request);
        assert_eq!(request.header_texts("x-internal"), ["secret"]);
        assert!(request.response_headers().is_empty());
    }

    #[test]
    fn refused_edits_are_reported_and_the_rest_applied() {
        let router = router(serde_json::json!({ "default": {
            "upstream": "a",
            "response_headers": { "add": { "x-refused": "1", "x-ok": "1" } }
        } }));
        let request =
            FakeRequest::new("GET", "/").with_refusal("x-refused", EditError::InvalidValue);
        let mut scratch = Vec::new();
        let mut facts = Facts::new(&request, &router.header_names, &mut scratch);
        let mut reports = Vec::new();
        router.route(
            &mut facts,
            || 0,
            |what, name, error| {
                reports.push(format!("{what} {name}: {error}"));
            },
        );
        assert_eq!(reports, ["add response header x-refused: invalid value"]);
        assert_eq!(
            request.response_headers(),
            [("x-ok".to_owned(), b"1".to_vec())]
        );
    }

    fn canary(sticky: serde_json::Value) -> Router {
        let mut rule = serde_json::json!({
            "name": "canary",
            "split": [
                { "upstream": "app", "weight": 90 },
                { "upstream": "drained", "weight": 0 },
                { "upstream": "canary", "weight": 10 }
            ]
        });
        if !sticky.is_null() {
            rule["sticky"] = sticky;
        }
        router(serde_json::json!({ "rules": [rule] }))
    }

    #[test]
    fn split_positions_follow_the_weights() {
        let router = canary(serde_json::Value::Null);
        let at = |fraction: f64| {
            // A random value at this fraction of the u64 range.
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "test input"
            )]
            let random = (fraction * u64::MAX as f64) as u64;
            route_with(&router, &FakeRequest::new("GET", "/"), random)
                .1
                .unwrap()
        };
        assert_eq!(at(0.0), "app");
        assert_eq!(at(0.899), "app");
        assert_eq!(at(0.901), "canary");
        assert_eq!(at(1.0), "canary");
        let request = FakeRequest::new("GET", "/");
        route_with(&router, &request, u64::MAX);
        assert_eq!(request.upstream().as_deref(), Some("canary"));
    }

    #[test]
    fn a_split_with_one_weighted_upstream_needs_no_randomness() {
        let router = router(serde_json::json!({ "rules": [{
            "split": [
                { "upstream": "old", "weight": 0 },
                { "upstream": "new", "weight": 5 },
                { "upstream": "gone", "weight": 0 }
            ],
            "sticky": { "header": "x-user" }
        }] }));
        let request = FakeRequest::new("GET", "/").with_header("x-user", "u");
        let mut scratch = Vec::new();
        let mut facts = Facts::new(&request, &router.header_names, &mut scratch);
        let decision = router.route(
            &mut facts,
            || panic!("no randomness needed"),
            |what, name, error| panic!("{what} {name}: {error}"),
        );
        assert_eq!(decision.upstream, Some("new"));
        assert!(request.reads().is_empty(), "not even the sticky header");
    }

    #[test]
    fn sticky_header_pins_a_value_and_falls_back_to_random() {
        let router = canary(serde_json::json!({ "header": "X-User" }));
        let mut on_canary = 0;
        for user in 0..1000 {
            let user = format!("user-{user}");
            let request = || FakeRequest::new("GET", "/").with_header("x-user", &user);
            // Whatever the random source says, the user's hash decides.
            let first = route_with(&router, &request(), 0).1.unwrap();
            let second = route_with(&router, &request(), u64::MAX).1.unwrap();
            assert_eq!(first, second, "{user}");
            on_canary += usize::from(first == "canary");
        }
        // 1000 users at 10%: the hash spreads them (binomial sd ~9.5).
        assert!(
            (50..=150).contains(&on_canary),
            "{on_canary} of 1000 users on the canary"
        );

        // Absent or empty: the random source decides.
        for request in [
            FakeRequest::new("GET", "/"),
            FakeRequest::new("GET", "/").with_header("x-user", ""),
        ] {
            assert_eq!(route_with(&router, &request, 0).1.as_deref(), Some("app"));
            assert_eq!(
                route_with(&router, &request, u64::MAX).1.as_deref(),
                Some("canary")
            );
        }
    }

    #[test]
    fn sticky_cookie_reads_every_cookie_header() {
        let router = canary(serde_json::json!({ "cookie": "session" }));
        let by_header = canary(serde_json::json!({ "header": "x-user" }));
        for user in 0..200 {
            let value = format!("s{user}");
            let expected = route(
                &by_header,
                &FakeRequest::new("GET", "/").with_header("x-user", &value),
            )
            .1;
            let in_second_header = FakeRequest::new("GET", "/")
                .with_header("cookie", "theme=dark")
                .with_header("cookie", format!("a=1; session={value}; b=2"));
            assert_eq!(route_with(&router, &in_second_header, u64::MAX).1, expected);
            let alone =
                FakeRequest::new("GET", "/").with_header("cookie", format!("session={value}"));
            assert_eq!(route_with(&router, &alone, 0).1, expected);
            // RFC 6265: the quotes around a cookie value are not part of it.
            let quoted =
                FakeRequest::new("GET", "/").with_header("cookie", format!("session=\"{value}\""));
            assert_eq!(route_with(&router, &quoted, u64::MAX).1, expected);
        }
        let without = FakeRequest::new("GET", "/").with_header("cookie", "sessionx=1; theme=dark");
        assert_eq!(
            route_with(&router, &without, u64::MAX).1.as_deref(),
            Some("canary")
        );
        assert_eq!(route_with(&router, &without, 0).1.as_deref(), Some("app"));
    }

    #[test]
    fn raising_the_canary_weight_only_moves_users_onto_it() {
        let split = |canary_weight: u32| {
            router(serde_json::json!({ "rules": [{
                "split": [
                    { "upstream": "app", "weight": 100 - canary_weight },
                    { "upstream": "canary", "weight": canary_weight }
                ],
                "sticky": { "header": "x-user" }
            }] }))
        };
        let (at_10, at_25) = (split(10), split(25));
        for user in 0..500 {
            let request = || FakeRequest::new("GET", "/").with_header("x-user", format!("u{user}"));
            let before = route(&at_10, &request()).1;
            let after = route(&at_25, &request()).1;
            if before.as_deref() == Some("canary") {
                assert_eq!(after, before, "u{user} left the canary");
            }
        }
    }

    #[test]
    fn regexes_scan_at_most_max_regex_bytes() {
        let bounded = |matcher: serde_json::Value| {
            router(serde_json::json!({
                "rules": [{ "name": "hit", "match": matcher, "upstream": "u" }],
                "max_regex_bytes": 16,
            }))
        };
        let header =
            bounded(serde_json::json!({ "headers": [{ "name": "x-v", "regex": ".*beta.*" }] }));
        let with = |values: &[String]| {
            let mut request = FakeRequest::new("GET", "/");
            for value in values {
                request = request.with_header("x-v", value.clone());
            }
            rule_of(&header, request)
        };
        let sized = |len: usize| format!("beta{}", "x".repeat(len - 4));
        assert_eq!(with(&[sized(16)]), "hit");
        // One byte over: not scanned, no match (never an error, never a long scan).
        assert_eq!(with(&[sized(17)]), "none");
        assert_eq!(with(&[sized(100_000)]), "none");
        // Values too long are skipped; shorter ones after them are still tested...
        assert_eq!(with(&[sized(100_000), sized(8)]), "hit");
        // ...within what is left of the bound for the whole condition.
        assert_eq!(with(&["x".repeat(10), sized(8)]), "none");
        assert_eq!(with(&["x".repeat(8), sized(8)]), "hit");

        // The path without its query.
        let path = bounded(serde_json::json!({ "path": { "regex": "/beta.*" } }));
        assert_eq!(
            rule_of(&path, FakeRequest::new("GET", "/beta/0123456789")),
            "hit"
        );
        assert_eq!(
            rule_of(&path, FakeRequest::new("GET", "/beta/0123456789?q=1")),
            "hit"
        );
        assert_eq!(
            rule_of(&path, FakeRequest::new("GET", "/beta/01234567890")),
            "none"
        );
        // Decoded query values (`%41` is one byte).
        let query = bounded(serde_json::json!({ "query": [{ "name": "q", "regex": "A+" }] }));
        let q16 = "%41".repeat(16);
        assert_eq!(
            rule_of(&query, FakeRequest::new("GET", &format!("/?q={q16}"))),
            "hit"
        );
        assert_eq!(
            rule_of(&query, FakeRequest::new("GET", &format!("/?q={q16}A"))),
            "none"
        );

        // Exact and prefix tests are not bounded: they cost the length of the configured string.
        let prefix =
            bounded(serde_json::json!({ "headers": [{ "name": "x-v", "prefix": "beta" }] }));
        assert_eq!(
            rule_of(
                &prefix,
                FakeRequest::new("GET", "/").with_header("x-v", sized(100_000))
            ),
            "hit"
        );

        // The default is 4 KiB.
        let default =
            single(serde_json::json!({ "headers": [{ "name": "x-v", "regex": ".*beta.*" }] }));
        let request = |len: usize| FakeRequest::new("GET", "/").with_header("x-v", sized(len));
        assert_eq!(rule_of(&default, request(4096)), "hit");
        assert_eq!(rule_of(&default, request(4097)), "none");
    }
}
