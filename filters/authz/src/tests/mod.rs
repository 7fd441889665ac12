//! Native tests: the verifier, the JWKS reader, the policy, mesh principals, and a property
//! test that throws random and mutated tokens at the verifier.

#[path = "../../../../tests/fixtures/authz/sign.rs"]
mod sign;

mod algorithms;
mod fuzz;
mod jwt;
mod policy;
mod principals;
