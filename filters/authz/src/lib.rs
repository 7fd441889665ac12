//! weft's first-party authz filter: authenticates requests with a JWT (RS256/384/512,
//! PS256/384/512, ES256, ES384, EdDSA, HS256/384/512; keys from an inline JWKS) or an API key,
//! then applies deny and allow rules over the path, method, headers, claims, client address and
//! mTLS peer identity (SPIFFE IDs, and Istio-style mesh principals and namespaces).
//! `mode: audit` evaluates, logs and counts without blocking. `README.md` is the configuration
//! reference.
//!
//! JWT signatures are verified by the host, natively, with ring (`weft_sdk::crypto`); the
//! module holds no signature crypto of its own. The decision logic (`policy`, `jwt`, `rules`)
//! makes no other host calls, and natively the SDK runs the host's crypto code in process, so
//! it is tested natively; this file only moves data between it and the proxy.

mod cache;
pub mod config;
mod curve;
mod jwks;
pub mod jwt;
mod policy;
mod principals;
mod rules;

#[cfg(test)]
mod tests;

use std::time::UNIX_EPOCH;

use weft_sdk::metrics::Counter;
use weft_sdk::text::{self, path_without_query};
use weft_sdk::{Action, Filter, Hooks, LocalResponse, Request};

use crate::config::{Config, Mode};
use crate::policy::{Edit, Evaluation, Policy, Reason, RuleRef, Verdict};

/// The authz filter: one per wasm instance, with its own verification cache.
#[derive(Debug)]
pub struct Authz {
    policy: Policy,
    decisions: Counter,
}

impl Filter for Authz {
    type Config = Config;
    const HOOKS: Hooks = Hooks::REQUEST_HEADERS;

    fn new(config: Config) -> Result<Self, String> {
        let policy = Policy::from_config(config)?;
        let decisions = Counter::define(
            "authz_decisions",
            "Authorization decisions, by decision (allowed, denied, unauthenticated, audit_denied, audit_unauthenticated) and reason.",
            &["decision", "reason"],
        )
        .map_err(|err| err.to_string())?;
        Ok(Authz { policy, decisions })
    }

    fn on_request_headers(&self, request: &Request) -> Action {
        let evaluation = self.policy.evaluate(request, wall_clock_seconds);
        let audit = self.policy.mode == Mode::Audit;
        let decision = match (evaluation.verdict, audit) {
            (Verdict::Allowed, _) => "allowed",
            (Verdict::Denied, false) => "denied",
            (Verdict::Unauthenticated, false) => "unauthenticated",
            (Verdict::Denied, true) => "audit_denied",
            (Verdict::Unauthenticated, true) => "audit_unauthenticated",
        };
        self.decisions
            .add(&[decision, evaluation.reason.as_str()], 1);

        if let Some(reply) = self.policy.reply(&evaluation) {
            if audit {
                weft_sdk::info!(
                    "audit: would answer {} to {} {}: {}",
                    reply.status,
                    request.method(),
                    // Queries can carry secrets: keep them out of logs.
                    path_without_query(&request.path()),
                    explain(&evaluation)
                );
            } else {
                weft_sdk::debug!(
                    "{} {} {}: {}",
                    reply.status,
                    request.method(),
                    path_without_query(&request.path()),
                    explain(&evaluation)
                );
                let mut response = LocalResponse::new(reply.status)
                    .header("content-type", "text/plain; charset=utf-8")
                    .body(reply.body);
                if let Some(challenge) = reply.challenge {
                    response = response.header("www-authenticate", challenge);
                }
                return Action::Respond(response);
            }
        }
        self.policy
            .edits(&evaluation, |edit| apply(&self.policy, request, &edit));
        Action::Continue
    }
}

/// Apply one edit. A claim value the proxy refuses as a header is dropped, and the client's
/// copy with it: never forward a header the filter did not vouch for.
fn apply(policy: &Policy, request: &Request, edit: &Edit<'_>) {
    let result = match edit {
        Edit::Set(name, value) => request.set_header(name, value).or_else(|err| {
            weft_sdk::warn!("cannot forward {name}: {err}; removing it");
            request.remove_header(name)
        }),
        Edit::Remove(name) => request.remove_header(name),
        Edit::RemoveCookie(cookie) => {
            let headers = request.header_values("cookie");
            match text::cookies_without(&headers, cookie) {
                Some(rest) => request.set_header("cookie", rest),
                None => request.remove_header("cookie"),
            }
        }
        Edit::KeepTokens(name) => {
            let values = request.header_values(name);
            request.remove_header(name).and_then(|()| {
                values
                    .iter()
                    .filter(|value| policy.is_token_value(name, value))
                    .try_for_each(|value| request.append_header(name, value))
            })
        }
    };
    if let Err(err) = result {
        weft_sdk::warn!("cannot edit the request ({edit:?}): {err}");
    }
}

fn explain(evaluation: &Evaluation) -> String {
    let reason = evaluation.reason.as_str();
    match (evaluation.rule, evaluation.reason) {
        (Some(RuleRef::Deny(i)), _) => format!("{reason} (rules.deny[{i}])"),
        (Some(RuleRef::Allow(i)), _) => format!("{reason} (rules.allow[{i}])"),
        (None, Reason::Token(rejection)) => format!("{reason} ({rejection})"),
        (None, _) => reason.to_owned(),
    }
}

fn wall_clock_seconds() -> u64 {
    weft_sdk::clock::wall_now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

weft_sdk::export_filter!(Authz);
