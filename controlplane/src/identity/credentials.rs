//! How a `Certify` caller's credential is checked: which workload (namespace and service
//! account) it proves the caller runs as.
//!
//! - [`BootstrapTokens`], for the directory source (one machine, no cluster): a file of
//!   `<token> <namespace>/<service-account>` lines that an operator hands out.
//! - [`TokenReviewer`], for the Kubernetes source: the pod's service-account token, checked
//!   by the API server with a `TokenReview` bound to an audience.
//!
//! Tokens are secrets: they are never logged, only a short prefix of their sha256 digest
//! ([`token_digest_prefix`]).

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::{Api, PostParams};
use sha2::{Digest, Sha256};

use crate::control_plane::lock;

/// The largest bootstrap token file read.
pub const MAX_BOOTSTRAP_FILE_BYTES: u64 = 1 << 20;
/// The shortest bootstrap token accepted: a guessable token would hand out identities.
pub const MIN_BOOTSTRAP_TOKEN_CHARS: usize = 16;
/// The audience service-account tokens must be bound to, unless told otherwise.
pub const DEFAULT_TOKEN_AUDIENCE: &str = "weft";
/// How long a `TokenReview` may take before `Certify` answers `UNAVAILABLE`.
pub const TOKEN_REVIEW_TIMEOUT: Duration = Duration::from_secs(5);

/// The workload a credential proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proven {
    /// Its namespace.
    pub namespace: String,
    /// Its service account.
    pub service_account: String,
}

impl std::fmt::Display for Proven {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.service_account)
    }
}

/// Why a credential proves nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReviewError {
    /// The token is wrong, unknown, expired or for another audience: `UNAUTHENTICATED`.
    #[error("{0}")]
    Unauthenticated(String),
    /// It cannot be checked now (the API server does not answer, the token file is broken):
    /// `UNAVAILABLE`, worth retrying.
    #[error("{0}")]
    Unavailable(String),
}

/// What checks credentials.
#[derive(Debug)]
pub enum Reviewer {
    /// Bootstrap tokens from a file (the directory source).
    Bootstrap(BootstrapTokens),
    /// Service-account tokens reviewed by Kubernetes (the Kubernetes source).
    TokenReview(TokenReviewer),
}

impl Reviewer {
    /// The workload `token` proves.
    pub async fn review(&self, token: &str) -> Result<Proven, ReviewError> {
        if token.is_empty() {
            return Err(ReviewError::Unauthenticated(
                "no credential: CertifyRequest.token is empty".to_owned(),
            ));
        }
        match self {
            Self::Bootstrap(tokens) => tokens.review(token),
            Self::TokenReview(reviewer) => reviewer.review(token).await,
        }
    }

    /// `bootstrap-tokens` or `kubernetes-token-review`, for status.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Bootstrap(_) => "bootstrap-tokens",
            Self::TokenReview(_) => "kubernetes-token-review",
        }
    }
}

/// The first 12 hex digits of a token's sha256: enough to tell tokens apart in a log, useless
/// for finding the token.
pub fn token_digest_prefix(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    hex::encode(&digest[..6])
}

/// Bootstrap tokens: a file of lines `<token> <namespace>/<service-account>`; `#` starts a
/// comment line, blank lines are ignored. The file is read again when it changes (its
/// modification time, size or inode), so tokens can be added and revoked without a restart.
///
/// Tokens are kept and compared as sha256 digests, never as strings. While the file is
/// unreadable or malformed after a change, no token is accepted (`UNAVAILABLE`): a broken
/// edit that meant to revoke a token must not leave it valid.
#[derive(Debug)]
pub struct BootstrapTokens {
    path: PathBuf,
    state: Mutex<TokenFile>,
}

#[derive(Debug)]
struct TokenFile {
    /// What the file looked like when last read.
    stamp: Option<Stamp>,
    /// The tokens, by digest; or why the file could not be used.
    tokens: Result<HashMap<[u8; 32], Proven>, String>,
}

/// What tells a changed file from the one read before.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl Stamp {
    fn of(metadata: &std::fs::Metadata) -> Self {
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(metadata);
        #[cfg(not(unix))]
        let inode = 0;
        Self {
            modified: metadata.modified().ok(),
            len: metadata.len(),
            inode,
        }
    }
}

impl BootstrapTokens {
    /// Reads the file. Errors (naming `file:line`) when it cannot be read or a line is
    /// malformed: the control plane should not start with a broken token file.
    pub fn load(path: impl Into<PathBuf>) -> Result<Self, String> {
        let path = path.into();
        let metadata =
            std::fs::metadata(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let tokens = read_tokens(&path)?;
        if tokens.is_empty() {
            tracing::warn!(
                file = %path.display(),
                "the bootstrap token file holds no token yet: no proxy can get an identity \
                 until one is added"
            );
        }
        Ok(Self {
            state: Mutex::new(TokenFile {
                stamp: Some(Stamp::of(&metadata)),
                tokens: Ok(tokens),
            }),
            path,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many tokens the file holds now (0 while it is broken).
    pub fn len(&self) -> usize {
        let mut state = lock(&self.state);
        self.refresh(&mut state);
        state.tokens.as_ref().map_or(0, HashMap::len)
    }

    /// Whether the file holds no usable token.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The workload `token` belongs to.
    pub fn review(&self, token: &str) -> Result<Proven, ReviewError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut state = lock(&self.state);
        self.refresh(&mut state);
        match &state.tokens {
            Ok(tokens) => tokens.get(&digest).cloned().ok_or_else(|| {
                ReviewError::Unauthenticated(
                    "the bootstrap token is not in the control plane's token file".to_owned(),
                )
            }),
            Err(_) => Err(ReviewError::Unavailable(
                "the control plane cannot read its bootstrap token file; its log says why"
                    .to_owned(),
            )),
        }
    }

    /// Reads the file again if it changed since it was last read.
    fn refresh(&self, state: &mut TokenFile) {
        let stamp = match std::fs::metadata(&self.path) {
            Ok(metadata) => Some(Stamp::of(&metadata)),
            Err(e) => {
                if state.stamp.is_some() {
                    let message = format!("cannot read {}: {e}", self.path.display());
                    tracing::error!(
                        error = %message,
                        "the bootstrap token file is gone; no token is accepted until it is back"
                    );
                    state.tokens = Err(message);
                    state.stamp = None;
                }
                return;
            }
        };
        if stamp == state.stamp {
            return;
        }
        state.stamp = stamp;
        match read_tokens(&self.path) {
            Ok(tokens) => {
                tracing::info!(
                    file = %self.path.display(),
                    tokens = tokens.len(),
                    "bootstrap tokens reloaded"
                );
                state.tokens = Ok(tokens);
            }
            Err(message) => {
                tracing::error!(
                    error = %message,
                    "the bootstrap token file is broken; no token is accepted until it is fixed"
                );
                state.tokens = Err(message);
            }
        }
    }
}

/// Reads and parses a token file (at most [`MAX_BOOTSTRAP_FILE_BYTES`]).
fn read_tokens(path: &Path) -> Result<HashMap<[u8; 32], Proven>, String> {
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_BOOTSTRAP_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_BOOTSTRAP_FILE_BYTES {
        return Err(format!(
            "{} is larger than {} KiB; a bootstrap token file holds one short line per token",
            path.display(),
            MAX_BOOTSTRAP_FILE_BYTES >> 10
        ));
    }
    let text = String::from_utf8(bytes)
        .map_err(|e| format!("{} is not UTF-8 text: {e}", path.display()))?;
    parse_tokens(&text, path)
}

/// Parses token lines; errors name `file:line`.
fn parse_tokens(text: &str, path: &Path) -> Result<HashMap<[u8; 32], Proven>, String> {
    let mut tokens: HashMap<[u8; 32], (Proven, usize)> = HashMap::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let at = || format!("{}:{number}", path.display());
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let (Some(token), Some(workload), None) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(format!(
                "{}: expected `<token> <namespace>/<service-account>` (two fields separated by \
                 a space)",
                at()
            ));
        };
        if token.chars().count() < MIN_BOOTSTRAP_TOKEN_CHARS {
            return Err(format!(
                "{}: the token has {} characters; bootstrap tokens need at least \
                 {MIN_BOOTSTRAP_TOKEN_CHARS} (make one with `head -c 24 /dev/urandom | base64`)",
                at(),
                token.chars().count()
            ));
        }
        let Some((namespace, service_account)) = workload.split_once('/') else {
            return Err(format!(
                "{}: {workload:?} is not `<namespace>/<service-account>`",
                at()
            ));
        };
        weft_identity::check_name(namespace, "namespace").map_err(|e| format!("{}: {e}", at()))?;
        weft_identity::check_name(service_account, "service account")
            .map_err(|e| format!("{}: {e}", at()))?;
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let proven = Proven {
            namespace: namespace.to_owned(),
            service_account: service_account.to_owned(),
        };
        if let Some((_, first)) = tokens.get(&digest) {
            return Err(format!(
                "{}: this token is already on line {first}; each token names one workload",
                at()
            ));
        }
        tokens.insert(digest, (proven, number));
    }
    Ok(tokens.into_iter().map(|(k, (p, _))| (k, p)).collect())
}

/// Service-account tokens, checked by the Kubernetes API server (`TokenReview`, which the
/// control plane's service account must be allowed to `create`).
#[derive(Clone)]
pub struct TokenReviewer {
    client: kube::Client,
    audience: String,
    timeout: Duration,
}

impl std::fmt::Debug for TokenReviewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenReviewer")
            .field("audience", &self.audience)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl TokenReviewer {
    /// Reviews tokens with `client`, requiring them to be bound to `audience`.
    pub fn new(client: kube::Client, audience: impl Into<String>) -> Self {
        Self {
            client,
            audience: audience.into(),
            timeout: TOKEN_REVIEW_TIMEOUT,
        }
    }

    /// How long a review may take (default [`TOKEN_REVIEW_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The audience tokens must be bound to.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The service account `token` belongs to, as the API server says.
    pub async fn review(&self, token: &str) -> Result<Proven, ReviewError> {
        let review = TokenReview {
            metadata: Default::default(),
            spec: TokenReviewSpec {
                token: token.to_owned(),
                audiences: Some(vec![self.audience.clone()]),
            },
            status: None,
        };
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let answer =
            match tokio::time::timeout(self.timeout, api.create(&PostParams::default(), &review))
                .await
            {
                Ok(Ok(answer)) => answer,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "TokenReview failed");
                    return Err(ReviewError::Unavailable(format!(
                        "the control plane cannot review the token with the Kubernetes API: {e}"
                    )));
                }
                Err(_) => {
                    tracing::warn!(timeout = ?self.timeout, "TokenReview timed out");
                    return Err(ReviewError::Unavailable(format!(
                        "the Kubernetes API did not answer the TokenReview within {:?}",
                        self.timeout
                    )));
                }
            };
        self.judge(answer)
    }

    /// What a `TokenReview` answer proves.
    fn judge(&self, answer: TokenReview) -> Result<Proven, ReviewError> {
        let status = answer.status.unwrap_or_default();
        if status.authenticated != Some(true) {
            return Err(ReviewError::Unauthenticated(match status.error {
                Some(error) if !error.is_empty() => {
                    format!("the Kubernetes API refused the token: {error}")
                }
                _ => "the Kubernetes API refused the token".to_owned(),
            }));
        }
        // An authenticator that checks audiences answers with the ones the token is valid
        // for; none means it did not check, and the token may be meant for someone else.
        let audiences = status.audiences.unwrap_or_default();
        if !audiences.contains(&self.audience) {
            return Err(ReviewError::Unauthenticated(format!(
                "the token is not bound to audience {:?} (the review answered audiences {:?}); \
                 mount a projected service-account token with `audience: {}`",
                self.audience, audiences, self.audience
            )));
        }
        let username = status.user.and_then(|u| u.username).unwrap_or_default();
        service_account_of(&username).ok_or_else(|| {
            ReviewError::Unauthenticated(format!(
                "the token is {username:?}'s, not a service account's"
            ))
        })
    }
}

/// `system:serviceaccount:<namespace>:<name>` → the service account.
fn service_account_of(username: &str) -> Option<Proven> {
    let rest = username.strip_prefix("system:serviceaccount:")?;
    let (namespace, service_account) = rest.split_once(':')?;
    if service_account.contains(':')
        || weft_identity::check_name(namespace, "namespace").is_err()
        || weft_identity::check_name(service_account, "service account").is_err()
    {
        return None;
    }
    Some(Proven {
        namespace: namespace.to_owned(),
        service_account: service_account.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use k8s_openapi::api::authentication::v1::{TokenReviewStatus, UserInfo};

    const TOKEN: &str = "0123456789abcdef-shop";

    fn parse(text: &str) -> Result<HashMap<[u8; 32], Proven>, String> {
        parse_tokens(text, Path::new("tokens"))
    }

    #[test]
    fn token_lines_comments_and_errors_with_their_line() {
        let tokens = parse(&format!(
            "# who may ask for which identity\n\n  {TOKEN}   shop/orders  \n\
             fedcba9876543210-pay payments/api\n"
        ))
        .unwrap();
        assert_eq!(tokens.len(), 2);
        let digest: [u8; 32] = Sha256::digest(TOKEN.as_bytes()).into();
        assert_eq!(
            tokens[&digest],
            Proven {
                namespace: "shop".to_owned(),
                service_account: "orders".to_owned()
            }
        );
        for (text, line, says) in [
            (format!("# c\n{TOKEN}\n"), 2, "two fields"),
            (format!("{TOKEN} shop/orders extra\n"), 1, "two fields"),
            (
                format!("\n{TOKEN} shop\n"),
                2,
                "not `<namespace>/<service-account>`",
            ),
            (format!("{TOKEN} Shop/orders\n"), 1, "namespace \"Shop\""),
            (format!("{TOKEN} shop/\n"), 1, "service account \"\""),
            ("short shop/orders\n".to_owned(), 1, "at least 16"),
            (
                format!("{TOKEN} shop/orders\n# again\n{TOKEN} shop/other\n"),
                3,
                "already on line 1",
            ),
        ] {
            let error = parse(&text).unwrap_err();
            assert!(
                error.starts_with(&format!("tokens:{line}: ")) && error.contains(says),
                "{text:?}: {error}"
            );
        }
    }

    #[test]
    fn the_file_is_read_again_when_it_changes_and_refuses_all_while_broken() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, format!("{TOKEN} shop/orders\n")).unwrap();
        let tokens = BootstrapTokens::load(&path).unwrap();
        assert_eq!(tokens.review(TOKEN).unwrap().to_string(), "shop/orders");
        let other = "another-token-0123456789";
        assert!(matches!(
            tokens.review(other),
            Err(ReviewError::Unauthenticated(_))
        ));

        // Added without a restart (a rename: a new inode even within one mtime tick).
        let tmp = dir.path().join("tokens.tmp");
        std::fs::write(&tmp, format!("{TOKEN} shop/orders\n{other} pay/api\n")).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        assert_eq!(tokens.review(other).unwrap().to_string(), "pay/api");

        // A broken edit: nothing is accepted, not even the tokens that were valid.
        std::fs::write(&tmp, format!("{TOKEN} shop/orders\n{other}\n")).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        assert!(matches!(
            tokens.review(TOKEN),
            Err(ReviewError::Unavailable(_))
        ));
        assert!(tokens.is_empty());

        // Fixed, with the first token revoked.
        std::fs::write(&tmp, format!("{other} pay/api\n")).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        assert!(matches!(
            tokens.review(TOKEN),
            Err(ReviewError::Unauthenticated(_))
        ));
        assert!(tokens.review(other).is_ok());

        // Gone: nothing accepted.
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(
            tokens.review(other),
            Err(ReviewError::Unavailable(_))
        ));
    }

    #[test]
    fn oversized_and_missing_files_are_refused_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        let error = BootstrapTokens::load(&path).unwrap_err();
        assert!(error.contains("cannot read"), "{error}");
        let line = format!("{TOKEN} shop/orders\n");
        let big = "# padding padding padding padding padding padding padding\n"
            .repeat((MAX_BOOTSTRAP_FILE_BYTES as usize / 58) + 10)
            + &line;
        std::fs::write(&path, big).unwrap();
        let error = BootstrapTokens::load(&path).unwrap_err();
        assert!(error.contains("larger than 1024 KiB"), "{error}");
    }

    #[test]
    fn service_account_usernames() {
        assert_eq!(
            service_account_of("system:serviceaccount:shop:orders"),
            Some(Proven {
                namespace: "shop".to_owned(),
                service_account: "orders".to_owned()
            })
        );
        for other in [
            "system:serviceaccount:shop",
            "system:serviceaccount:shop:orders:x",
            "system:node:worker-1",
            "alice",
            "system:serviceaccount::orders",
            "system:serviceaccount:Shop:orders",
        ] {
            assert_eq!(service_account_of(other), None, "{other}");
        }
    }

    #[tokio::test]
    async fn review_answers_are_judged_on_authentication_audience_and_user() {
        // Never contacted: only `judge` runs.
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let reviewer = TokenReviewer::new(kube::Client::try_from(config).unwrap(), "weft");
        let answer =
            |authenticated: Option<bool>, audiences: Option<Vec<&str>>, user: &str| TokenReview {
                metadata: Default::default(),
                spec: TokenReviewSpec::default(),
                status: Some(TokenReviewStatus {
                    authenticated,
                    audiences: audiences.map(|a| a.into_iter().map(str::to_owned).collect()),
                    error: (authenticated != Some(true)).then(|| "invalid bearer token".to_owned()),
                    user: Some(UserInfo {
                        username: Some(user.to_owned()),
                        ..UserInfo::default()
                    }),
                }),
            };
        let sa = "system:serviceaccount:shop:orders";
        assert_eq!(
            reviewer
                .judge(answer(Some(true), Some(vec!["weft"]), sa))
                .unwrap()
                .to_string(),
            "shop/orders"
        );
        let refused = |review| match reviewer.judge(review) {
            Err(ReviewError::Unauthenticated(message)) => message,
            other => panic!("{other:?}"),
        };
        assert!(refused(answer(None, None, "")).contains("invalid bearer token"));
        assert!(refused(answer(Some(false), None, sa)).contains("invalid bearer token"));
        assert!(refused(answer(Some(true), Some(vec!["api"]), sa)).contains("audience \"weft\""));
        assert!(refused(answer(Some(true), None, sa)).contains("audience \"weft\""));
        assert!(refused(answer(Some(true), Some(vec!["weft"]), "alice")).contains("\"alice\""));
    }
}
