//! The whole decision, free of host calls: find the credentials, authenticate them, run the deny
//! and allow rules, and say what to send or which headers to edit. `lib.rs` only moves data
//! between this and the proxy.

use std::cell::RefCell;
use std::rc::Rc;

use serde_json::Value;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use weft_sdk::facts::RequestFacts;
use weft_sdk::text;

use crate::cache::Cache;
use crate::config::{ApiKeysConfig, Config, JwtConfig, Mode};
use crate::jwt::{Claims, Rejection, Verifier};
use crate::rules::{self, Facts, Identity, Kind, Rule};

/// Where a token may be found.
#[derive(Debug)]
enum Source {
    Header {
        name: String,
        prefix: Option<String>,
    },
    Cookie(String),
}

/// A verified token as cached: its claims and the values of the headers they become.
#[derive(Debug)]
pub(crate) struct Verified {
    pub(crate) claims: Claims,
    header_values: Vec<Option<String>>,
}

#[derive(Debug)]
struct JwtAuth {
    verifier: Verifier,
    sources: Vec<Source>,
    forward_token: bool,
    /// (claim path, header name).
    claim_headers: Vec<(String, String)>,
    cache: RefCell<Cache<Verified>>,
}

#[derive(Debug)]
struct ApiKeys {
    header: String,
    /// (name, SHA-256 of the key).
    keys: Vec<(String, [u8; 32])>,
    forward_key: bool,
    name_header: Option<String>,
}

/// The outcome before the mode applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Goes on.
    Allowed,
    /// 403.
    Denied,
    /// 401.
    Unauthenticated,
}

/// Why: the `reason` metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// An allow rule matched.
    AllowRule,
    /// No allow rules, and the request authenticated.
    Authenticated,
    /// A deny rule matched.
    DenyRule,
    /// Allow rules exist and none matched.
    NoAllowRule,
    /// No credentials.
    MissingToken,
    /// An API key that is not configured.
    BadApiKey,
    /// The token was rejected.
    Token(Rejection),
}

impl Reason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Reason::AllowRule => "allow_rule",
            Reason::Authenticated => "authenticated",
            Reason::DenyRule => "deny_rule",
            Reason::NoAllowRule => "no_allow_rule",
            Reason::MissingToken => "missing_token",
            Reason::BadApiKey => "bad_api_key",
            Reason::Token(rejection) => rejection.as_str(),
        }
    }
}

/// Who the request authenticated as.
#[derive(Debug, Clone)]
pub(crate) enum Principal {
    /// No credentials, let through to the rules by `allow_missing` (or not authenticated).
    Anonymous,
    /// A verified JWT.
    Jwt(Rc<Verified>),
    /// The API key at this index.
    ApiKey(usize),
}

/// Where the credentials the request presented were: what to remove before the request goes
/// upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Found {
    /// The `jwt.from` sources that held a token (indices, in order).
    pub(crate) sources: Vec<usize>,
    /// Header sources (indices, one per header name) whose header held token values and also
    /// values that are no token (`Basic ...` beside `Bearer ...`): when tokens are forwarded,
    /// only the token values go.
    pub(crate) mixed: Vec<usize>,
    /// The API key header was present.
    pub(crate) api_key: bool,
}

impl Found {
    /// Whether the request presented any credential.
    fn any(&self) -> bool {
        !self.sources.is_empty() || self.api_key
    }
}

/// Every credential a request presented, before verification.
#[derive(Debug, Default)]
struct Presented {
    /// The tokens, in `jwt.from` order (every value of every header source, every cookie of
    /// every cookie source), as sent (trimmed, without the prefix).
    tokens: Vec<Vec<u8>>,
    /// Every value of the API key header.
    api_keys: Vec<Vec<u8>>,
    found: Found,
}

/// Which rule decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RuleRef {
    /// `rules.deny[i]`.
    Deny(usize),
    /// `rules.allow[i]`.
    Allow(usize),
}

/// Everything the filter needs to act on one request.
#[derive(Debug, Clone)]
pub(crate) struct Evaluation {
    pub(crate) verdict: Verdict,
    pub(crate) reason: Reason,
    pub(crate) rule: Option<RuleRef>,
    pub(crate) principal: Principal,
    pub(crate) found: Found,
}

/// A request edit for an evaluation that goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Edit<'a> {
    /// Set the header (replacing the client's values).
    Set(&'a str, &'a str),
    /// Remove the header.
    Remove(&'a str),
    /// Remove this cookie from the `cookie` header(s).
    RemoveCookie(&'a str),
    /// Keep only the values of the header that are tokens ([`Policy::is_token_value`]): a
    /// forwarded token header loses the values the filter did not verify.
    KeepTokens(&'a str),
}

/// A local response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) challenge: Option<String>,
    pub(crate) body: String,
}

/// The compiled configuration of one filter instance, with its verification cache.
#[derive(Debug)]
pub(crate) struct Policy {
    pub(crate) mode: Mode,
    jwt: Option<JwtAuth>,
    api_keys: Option<ApiKeys>,
    allow_missing: bool,
    /// Neither `jwt` nor `api_keys`: the rules alone decide (on mesh principals, paths, ...),
    /// and a request no allow rule takes is forbidden (403), since no credential could help.
    mesh_only: bool,
    deny: Vec<Rule>,
    allow: Vec<Rule>,
    /// `Bearer realm="weft"`, or `ApiKey realm="weft"` without JWT.
    challenge: String,
    realm: String,
}

impl Policy {
    /// Check and compile `config`; errors name the field.
    pub(crate) fn from_config(config: Config) -> Result<Policy, String> {
        let mesh_only = config.jwt.is_none() && config.api_keys.is_none();
        if mesh_only && config.rules.deny.is_empty() && config.rules.allow.is_empty() {
            return Err(
                "give `jwt`, `api_keys` or both: there is nothing to authenticate with (or, to \
                 authorize mesh callers by their mTLS identity alone, `rules` with `from`)"
                    .to_owned(),
            );
        }
        if config.realm.is_empty()
            || !config
                .realm
                .bytes()
                .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\')
        {
            return Err("realm: printable ASCII without `\"` or `\\`, not empty".to_owned());
        }
        let jwt = config.jwt.as_ref().map(JwtAuth::from_config).transpose()?;
        let api_keys = config
            .api_keys
            .as_ref()
            .map(ApiKeys::from_config)
            .transpose()?;
        let deny = compile_rules(&config.rules.deny, Kind::Deny, "rules.deny")?;
        let allow = compile_rules(&config.rules.allow, Kind::Allow, "rules.allow")?;

        // The same header set from two places would let one overwrite the other.
        let mut set_headers: Vec<(&str, String)> = Vec::new();
        if let Some(jwt) = &jwt {
            for (i, (_, header)) in jwt.claim_headers.iter().enumerate() {
                set_headers.push((header, format!("jwt.claims_to_headers[{i}].header")));
            }
        }
        if let Some(ApiKeys {
            name_header: Some(header),
            ..
        }) = &api_keys
        {
            set_headers.push((header, "api_keys.name_header".to_owned()));
        }
        for (i, (header, field)) in set_headers.iter().enumerate() {
            if set_headers[..i].iter().any(|(other, _)| other == header) {
                return Err(format!(
                    "{field}: `{header}` is already set from another claim"
                ));
            }
            let credential = jwt
                .iter()
                .flat_map(|jwt| &jwt.sources)
                .any(|source| matches!(source, Source::Header { name, .. } if name == header))
                || api_keys
                    .as_ref()
                    .is_some_and(|keys| keys.header == **header)
                || *header == "cookie";
            if credential {
                return Err(format!(
                    "{field}: `{header}` carries credentials; forward claims in another header"
                ));
            }
        }

        let scheme = if jwt.is_some() { "Bearer" } else { "ApiKey" };
        Ok(Policy {
            mode: config.mode,
            jwt,
            api_keys,
            allow_missing: config.allow_missing || mesh_only,
            mesh_only,
            deny,
            allow,
            challenge: format!("{scheme} realm=\"{}\"", config.realm),
            realm: config.realm,
        })
    }

    /// Decide about `request`. `now` (wall-clock seconds) is read only when a token is found.
    pub(crate) fn evaluate(
        &self,
        request: &impl RequestFacts,
        now: impl FnOnce() -> u64,
    ) -> Evaluation {
        let (principal, found) = match self.authenticate(request, now) {
            (Ok(principal), found) => (principal, found),
            (Err(reason), found) => {
                return Evaluation {
                    verdict: Verdict::Unauthenticated,
                    reason,
                    rule: None,
                    principal: Principal::Anonymous,
                    found,
                };
            }
        };
        let (verdict, reason, rule) = self.authorize(request, &principal);
        Evaluation {
            verdict,
            reason,
            rule,
            principal,
            found,
        }
    }

    /// Every credential present must verify: every token in every `jwt.from` source and every
    /// value of the API key header. One bad credential beside good ones is refused (as Envoy's
    /// `jwt_authn` does), so a forged token cannot ride along with a valid one to the upstream.
    /// The identity is the first token (in `jwt.from` order), else the first API key.
    fn authenticate(
        &self,
        request: &impl RequestFacts,
        now: impl FnOnce() -> u64,
    ) -> (Result<Principal, Reason>, Found) {
        let presented = self.presented(request);
        let found = presented.found;
        if !found.any() {
            let missing = if self.allow_missing {
                Ok(Principal::Anonymous)
            } else {
                Err(Reason::MissingToken)
            };
            return (missing, found);
        }
        let mut principal = None;
        if let Some(jwt) = &self.jwt
            && !presented.tokens.is_empty()
        {
            let now = now();
            for (i, token) in presented.tokens.iter().enumerate() {
                // The same token twice (a header and a cookie) is verified once.
                if presented.tokens[..i].contains(token) {
                    continue;
                }
                // A token that is not even UTF-8 is not a JWT.
                let Ok(token) = std::str::from_utf8(token) else {
                    return (Err(Reason::Token(Rejection::Malformed)), found);
                };
                match jwt.verify(token, now) {
                    Ok(verified) => {
                        principal.get_or_insert(Principal::Jwt(verified));
                    }
                    Err(rejection) => return (Err(Reason::Token(rejection)), found),
                }
            }
        }
        if let Some(api_keys) = &self.api_keys {
            for key in &presented.api_keys {
                match api_keys.find(key) {
                    Some(index) => {
                        principal.get_or_insert(Principal::ApiKey(index));
                    }
                    None => return (Err(Reason::BadApiKey), found),
                }
            }
        }
        // `found.any()`: at least one credential was verified.
        (principal.ok_or(Reason::MissingToken), found)
    }

    /// Every credential in the request, unverified.
    fn presented(&self, request: &impl RequestFacts) -> Presented {
        let mut presented = Presented::default();
        if let Some(jwt) = &self.jwt {
            jwt.collect_tokens(request, &mut presented);
        }
        if let Some(api_keys) = &self.api_keys {
            presented.api_keys = request.header_values(&api_keys.header);
            presented.found.api_key = !presented.api_keys.is_empty();
        }
        presented
    }

    /// Whether `value` of header `name` holds a token for some `jwt.from` source of that header
    /// (it carries the source's prefix, or the source has none).
    pub(crate) fn is_token_value(&self, name: &str, value: &[u8]) -> bool {
        self.jwt.as_ref().is_some_and(|jwt| jwt.takes(name, value))
    }

    /// Deny rules first (any match: 403), then allow rules (any match: allowed; none: 403),
    /// and with no allow rules, any authenticated identity is allowed.
    fn authorize(
        &self,
        request: &impl RequestFacts,
        principal: &Principal,
    ) -> (Verdict, Reason, Option<RuleRef>) {
        let identity = match principal {
            Principal::Anonymous => Identity::Anonymous,
            Principal::Jwt(verified) => Identity::Jwt(&verified.claims),
            Principal::ApiKey(index) => Identity::ApiKey(self.api_key_name(*index)),
        };
        let facts = Facts::new(request);
        if let Some(i) = self.deny.iter().position(|r| r.matches(&facts, &identity)) {
            return (Verdict::Denied, Reason::DenyRule, Some(RuleRef::Deny(i)));
        }
        let anonymous = matches!(principal, Principal::Anonymous);
        if let Some(i) = self.allow.iter().position(|r| r.matches(&facts, &identity)) {
            return (Verdict::Allowed, Reason::AllowRule, Some(RuleRef::Allow(i)));
        }
        match (anonymous && !self.mesh_only, self.allow.is_empty()) {
            // Credentials might get it through: ask for them.
            (true, _) => (Verdict::Unauthenticated, Reason::MissingToken, None),
            (false, true) => (Verdict::Allowed, Reason::Authenticated, None),
            (false, false) => (Verdict::Denied, Reason::NoAllowRule, None),
        }
    }

    fn api_key_name(&self, index: usize) -> &str {
        self.api_keys
            .as_ref()
            .and_then(|keys| keys.keys.get(index))
            .map_or("", |(name, _)| name)
    }

    /// The response for an evaluation that stops the request (in enforce mode); `None` when it
    /// goes on.
    pub(crate) fn reply(&self, evaluation: &Evaluation) -> Option<Reply> {
        match evaluation.verdict {
            Verdict::Allowed => None,
            Verdict::Denied => Some(Reply {
                status: 403,
                challenge: None,
                body: "forbidden\n".to_owned(),
            }),
            Verdict::Unauthenticated => Some(match evaluation.reason {
                Reason::Token(rejection) => Reply {
                    status: 401,
                    challenge: Some(format!(
                        "Bearer realm=\"{}\", error=\"invalid_token\", error_description=\"{}\"",
                        self.realm,
                        rejection.description()
                    )),
                    body: format!("invalid token: {}\n", rejection.description()),
                },
                Reason::BadApiKey => Reply {
                    status: 401,
                    challenge: Some(self.challenge.clone()),
                    body: "invalid API key\n".to_owned(),
                },
                _ => Reply {
                    status: 401,
                    challenge: Some(self.challenge.clone()),
                    body: "authentication required\n".to_owned(),
                },
            }),
        }
    }

    /// The edits for a request that goes on: claim and key-name headers set from the identity
    /// or removed (so a client cannot supply its own), and the credential removed unless it is
    /// forwarded.
    pub(crate) fn edits<'a>(&'a self, evaluation: &'a Evaluation, mut edit: impl FnMut(Edit<'a>)) {
        if let Some(jwt) = &self.jwt {
            let verified = match &evaluation.principal {
                Principal::Jwt(verified) => Some(verified),
                _ => None,
            };
            for (i, (_, header)) in jwt.claim_headers.iter().enumerate() {
                match verified
                    .and_then(|v| v.header_values.get(i))
                    .and_then(Option::as_deref)
                {
                    Some(value) => edit(Edit::Set(header, value)),
                    None => edit(Edit::Remove(header)),
                }
            }
            if jwt.forward_token {
                // Forwarded tokens were all verified (or, in audit mode, are what the audit
                // saw); values of another scheme in the same header are not forwarded.
                for &i in &evaluation.found.mixed {
                    if let Some(Source::Header { name, .. }) = jwt.sources.get(i) {
                        edit(Edit::KeepTokens(name));
                    }
                }
            } else {
                for &i in &evaluation.found.sources {
                    match jwt.sources.get(i) {
                        Some(Source::Header { name, .. }) => edit(Edit::Remove(name)),
                        Some(Source::Cookie(name)) => edit(Edit::RemoveCookie(name)),
                        None => {}
                    }
                }
            }
        }
        if let Some(api_keys) = &self.api_keys {
            if let Some(header) = &api_keys.name_header {
                match &evaluation.principal {
                    Principal::ApiKey(index) => edit(Edit::Set(header, self.api_key_name(*index))),
                    _ => edit(Edit::Remove(header)),
                }
            }
            if !api_keys.forward_key && evaluation.found.api_key {
                edit(Edit::Remove(&api_keys.header));
            }
        }
    }
}

fn compile_rules(
    raw: &[crate::config::Rule],
    kind: Kind,
    field: &str,
) -> Result<Vec<Rule>, String> {
    raw.iter()
        .enumerate()
        .map(|(i, rule)| Rule::compile(rule, kind, &format!("{field}[{i}]")))
        .collect()
}

impl JwtAuth {
    fn from_config(config: &JwtConfig) -> Result<JwtAuth, String> {
        let verifier = Verifier::from_config(config)?;
        let sources = match &config.from {
            None => vec![Source::Header {
                name: "authorization".to_owned(),
                prefix: Some("Bearer ".to_owned()),
            }],
            Some(sources) if sources.is_empty() => {
                return Err("jwt.from: give at least one place to find the token, or omit it for `Authorization: Bearer`".to_owned());
            }
            Some(sources) => sources
                .iter()
                .enumerate()
                .map(|(i, source)| {
                    let at = format!("jwt.from[{i}]");
                    match (&source.header, &source.cookie) {
                        (Some(header), None) => {
                            let name = rules::header_name(header, &format!("{at}.header"))?;
                            let prefix = match &source.prefix {
                                Some(prefix) if prefix.is_empty() => None,
                                Some(prefix) => Some(prefix.clone()),
                                None if name == "authorization" => Some("Bearer ".to_owned()),
                                None => None,
                            };
                            Ok(Source::Header { name, prefix })
                        }
                        (None, Some(cookie)) => {
                            if source.prefix.is_some() {
                                return Err(format!("{at}.prefix: only for `header` sources"));
                            }
                            if !text::is_cookie_name(cookie) {
                                return Err(format!(
                                    "{at}.cookie: `{cookie}` is not a cookie name"
                                ));
                            }
                            Ok(Source::Cookie(cookie.clone()))
                        }
                        _ => Err(format!("{at}: give exactly one of `header` or `cookie`")),
                    }
                })
                .collect::<Result<_, String>>()?,
        };
        let mut claim_headers = Vec::new();
        for (i, mapping) in config.claims_to_headers.iter().enumerate() {
            if mapping.claim.is_empty() {
                return Err(format!(
                    "jwt.claims_to_headers[{i}].claim: must not be empty"
                ));
            }
            let header = rules::header_name(
                &mapping.header,
                &format!("jwt.claims_to_headers[{i}].header"),
            )?;
            claim_headers.push((mapping.claim.clone(), header));
        }
        Ok(JwtAuth {
            verifier,
            sources,
            forward_token: config.forward_token,
            claim_headers,
            cache: RefCell::new(Cache::new(config.cache_size)),
        })
    }

    /// Every token in the request, in source order: every value of each header source that
    /// carries the source's prefix (a value without it, such as `Authorization: Basic ...`, is
    /// no token), and every cookie of each cookie source's name in every `cookie` header.
    fn collect_tokens(&self, request: &impl RequestFacts, presented: &mut Presented) {
        let mut cookies: Option<Vec<Vec<u8>>> = None;
        let mut headers_seen: Vec<&str> = Vec::new();
        for (i, source) in self.sources.iter().enumerate() {
            let before = presented.tokens.len();
            match source {
                Source::Header { name, prefix } => {
                    let values = request.header_values(name);
                    for value in &values {
                        if let Some(range) = token_range(value, prefix.as_deref()) {
                            presented.tokens.push(value[range].to_vec());
                        }
                    }
                    // Tokens beside values no source of this header takes as a token (checked
                    // once per header name).
                    if prefix.is_some() && !headers_seen.contains(&name.as_str()) {
                        headers_seen.push(name);
                        let taken = values
                            .iter()
                            .filter(|value| self.takes(name, value))
                            .count();
                        if taken > 0 && taken < values.len() {
                            presented.found.mixed.push(i);
                        }
                    }
                }
                Source::Cookie(name) => {
                    let headers = cookies.get_or_insert_with(|| request.header_values("cookie"));
                    for header in headers.iter() {
                        for value in text::cookie_values(header, name) {
                            presented.tokens.push(value.to_vec());
                        }
                    }
                }
            }
            if presented.tokens.len() > before {
                presented.found.sources.push(i);
            }
        }
    }

    /// Whether some header source of header `name` takes `value` as a token.
    fn takes(&self, name: &str, value: &[u8]) -> bool {
        self.sources.iter().any(|source| match source {
            Source::Header {
                name: header,
                prefix,
            } => header == name && token_range(value, prefix.as_deref()).is_some(),
            Source::Cookie(_) => false,
        })
    }

    fn verify(&self, token: &str, now: u64) -> Result<Rc<Verified>, Rejection> {
        let cached = self.cache.borrow().get(token);
        if let Some(verified) = cached {
            self.verifier.check_time(&verified.claims, now)?;
            return Ok(verified);
        }
        let claims = self.verifier.verify_untimed(token)?;
        self.verifier.check_time(&claims, now)?;
        let header_values = self
            .claim_headers
            .iter()
            .map(|(claim, _)| claims.get(claim).and_then(header_value))
            .collect();
        let expires = claims.exp().map_or(u64::MAX, |exp| {
            exp.saturating_add(self.verifier.clock_skew())
        });
        let verified = Rc::new(Verified {
            claims,
            header_values,
        });
        self.cache
            .borrow_mut()
            .insert(token, verified.clone(), expires, now);
        Ok(verified)
    }
}

impl ApiKeys {
    fn from_config(config: &ApiKeysConfig) -> Result<ApiKeys, String> {
        let header = rules::header_name(&config.header, "api_keys.header")?;
        if config.keys.is_empty() {
            return Err("api_keys.keys: at least one key is required".to_owned());
        }
        let mut keys: Vec<(String, [u8; 32])> = Vec::new();
        for (i, key) in config.keys.iter().enumerate() {
            let at = format!("api_keys.keys[{i}]");
            if key.name.is_empty() || !key.name.bytes().all(|b| (b' '..=b'~').contains(&b)) {
                return Err(format!(
                    "{at}.name: printable ASCII, not empty (it may become a header value)"
                ));
            }
            let hash = text::decode_hex(&key.sha256)
                .and_then(|hash| <[u8; 32]>::try_from(hash).ok())
                .ok_or_else(|| {
                    format!(
                        "{at}.sha256: expected 64 hex digits (the SHA-256 of the key, not the key)"
                    )
                })?;
            if keys.iter().any(|(name, _)| *name == key.name) {
                return Err(format!(
                    "{at}.name: `{}` is already used by another key",
                    key.name
                ));
            }
            if keys.iter().any(|(_, other)| *other == hash) {
                return Err(format!("{at}.sha256: the same key is listed twice"));
            }
            keys.push((key.name.clone(), hash));
        }
        let name_header = config
            .name_header
            .as_deref()
            .map(|name| rules::header_name(name, "api_keys.name_header"))
            .transpose()?;
        if name_header.as_deref() == Some(header.as_str()) {
            return Err("api_keys.name_header: must differ from api_keys.header".to_owned());
        }
        Ok(ApiKeys {
            header,
            keys,
            forward_key: config.forward_key,
            name_header,
        })
    }

    /// The index of the key whose hash matches `key`'s. Every configured hash is compared, in
    /// constant time, so timing does not tell how close a guess came.
    fn find(&self, key: &[u8]) -> Option<usize> {
        let digest: [u8; 32] = Sha256::digest(key).into();
        let mut found = None;
        for (i, (_, hash)) in self.keys.iter().enumerate() {
            if bool::from(digest.ct_eq(hash)) {
                found = Some(i);
            }
        }
        found
    }
}

/// A claim as a header value: strings as they are, numbers and booleans as JSON, arrays joined
/// with `,`, objects as JSON. `None` for null, and for values a header cannot hold (control
/// characters): the header is then removed rather than forged.
fn header_value(value: &Value) -> Option<String> {
    let text = match value {
        Value::Null => return None,
        Value::String(text) => text.clone(),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    };
    weft_sdk::text::is_header_value(text.as_bytes()).then_some(text)
}

fn strip_prefix_ignore_case<'a>(value: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let head = value.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &value[prefix.len()..])
}

/// `range` of `value` without leading and trailing ASCII whitespace.
fn trimmed(value: &[u8], range: std::ops::Range<usize>) -> std::ops::Range<usize> {
    let slice = &value[range.clone()];
    let start = range.start + (slice.len() - slice.trim_ascii_start().len());
    let end = range.end - (slice.len() - slice.trim_ascii_end().len());
    start..end.max(start)
}

/// Where the token is in a header value: after `prefix` (matched case-insensitively), trimmed.
/// `None` when the value does not carry the prefix: it is no token (`Authorization: Basic ...`).
fn token_range(value: &[u8], prefix: Option<&str>) -> Option<std::ops::Range<usize>> {
    let start = match prefix {
        Some(prefix) => value.len() - strip_prefix_ignore_case(value, prefix.as_bytes())?.len(),
        None => 0,
    };
    Some(trimmed(value, start..value.len()))
}
