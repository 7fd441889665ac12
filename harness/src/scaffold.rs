//! `weft filter new NAME --sdk-path WEFT`: a filter crate that builds and passes its tests
//! straight away.
//!
//! `weft-sdk` and `weft-harness` are not published yet, so the crate depends on them by path,
//! in the weft checkout the user names (`--sdk-path`); nothing of the machine `weft` was built
//! on is baked in. The crate is a workspace of its own (delete its `[workspace]` table to make
//! it a member of yours), starts from that checkout's `Cargo.lock` so it resolves to the
//! versions weft is tested with, and, when the checkout has a `target/` directory, builds into
//! it so the harness's runtime (wasmtime) is not compiled a second time.

use std::fmt;
use std::path::{Path, PathBuf};

/// Why a filter crate could not be created.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The name cannot be a crate name.
    #[error(
        "{0:?} is not a usable crate name: use lower-case letters, digits and `-`, starting with \
         a letter (e.g. `my-filter`)"
    )]
    BadName(String),
    /// `--sdk-path` does not hold weft's `sdk/` and `harness/` crates.
    #[error(
        "{} is not a weft checkout (it needs sdk/Cargo.toml and harness/Cargo.toml); pass the \
         directory you cloned weft into, e.g. --sdk-path ~/src/weft",
        .0.display()
    )]
    NotACheckout(PathBuf),
    /// The directory exists and is not empty.
    #[error("{} already exists and is not empty; choose another --path", .0.display())]
    Exists(PathBuf),
    /// Writing failed.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
}

/// What [`create`] made, and what to do next (its `Display` is the text for the user).
#[derive(Debug, Clone)]
pub struct Created {
    /// The crate's directory.
    pub dir: PathBuf,
    /// The files written, relative to `dir`.
    pub files: Vec<&'static str>,
    /// The crate name.
    pub name: String,
    /// The build directory it shares with the weft checkout, if any.
    pub target_dir: Option<PathBuf>,
}

impl fmt::Display for Created {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = self.dir.display();
        let lib = self.name.replace('-', "_");
        writeln!(f, "created filter crate `{}` in {dir}:", self.name)?;
        for file in &self.files {
            writeln!(f, "  {file}")?;
        }
        writeln!(f)?;
        writeln!(f, "next:")?;
        writeln!(f, "  cd {dir}")?;
        writeln!(
            f,
            "  cargo test --release                       # the harness test (builds the filter)"
        )?;
        writeln!(f, "  cargo build --release --target wasm32-wasip2")?;
        let target = self
            .target_dir
            .as_ref()
            .map_or_else(|| "target".to_owned(), |t| t.display().to_string());
        write!(
            f,
            "  weft filter test {target}/wasm32-wasip2/release/{lib}.wasm --config config.yaml --cases cases.yaml"
        )
    }
}

/// Create the crate `name` in `dir` (which must not exist, or be empty), depending on the
/// `weft-sdk` and `weft-harness` of the weft checkout at `sdk_path`.
pub fn create(name: &str, dir: &Path, sdk_path: &Path) -> Result<Created, ScaffoldError> {
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !valid {
        return Err(ScaffoldError::BadName(name.to_owned()));
    }
    if dir.exists() {
        let empty = std::fs::read_dir(dir)
            .map(|mut entries| entries.next().is_none())
            .unwrap_or(false);
        if !empty {
            return Err(ScaffoldError::Exists(dir.to_owned()));
        }
    }
    let root = std::path::absolute(sdk_path).unwrap_or_else(|_| sdk_path.to_owned());
    let root = root.canonicalize().unwrap_or(root);
    if !root.join("sdk/Cargo.toml").is_file() || !root.join("harness/Cargo.toml").is_file() {
        return Err(ScaffoldError::NotACheckout(sdk_path.to_owned()));
    }
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).ok();
    let target_dir = Some(root.join("target")).filter(|t| t.is_dir());
    let shown_target = target_dir
        .as_ref()
        .map_or_else(|| "target".to_owned(), |t| t.display().to_string());
    let files: Vec<(&'static str, String)> = [
        ("Cargo.toml", Some(cargo_toml(name, &root))),
        (
            ".cargo/config.toml",
            target_dir.as_deref().map(cargo_config),
        ),
        ("src/lib.rs", Some(LIB_RS.replace("{name}", name))),
        ("tests/harness.rs", Some(HARNESS_RS.replace("{name}", name))),
        ("config.yaml", Some(CONFIG_YAML.to_owned())),
        ("cases.yaml", Some(CASES_YAML.to_owned())),
        (
            "README.md",
            Some(
                README_MD
                    .replace("{name}", name)
                    .replace("{lib}", &name.replace('-', "_"))
                    .replace("{target}", &shown_target)
                    .replace("{sdk}", &root.display().to_string()),
            ),
        ),
        (".gitignore", Some("/target\n".to_owned())),
        // weft's lock file: the versions weft is tested with (cargo drops what is unused).
        ("Cargo.lock", lock),
    ]
    .into_iter()
    .filter_map(|(path, content)| content.map(|c| (path, c)))
    .collect();
    for (path, content) in &files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| ScaffoldError::Write {
                path: parent.to_owned(),
                source,
            })?;
        }
        std::fs::write(&path, content).map_err(|source| ScaffoldError::Write { path, source })?;
    }
    Ok(Created {
        dir: dir.to_owned(),
        files: files.iter().map(|(path, _)| *path).collect(),
        name: name.to_owned(),
        target_dir,
    })
}

fn cargo_toml(name: &str, root: &Path) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

# A workspace of its own. To make the crate a member of another workspace, delete this table.
[workspace]

[lib]
# `cdylib`: the WebAssembly component the proxy loads; `rlib`: unit tests on the host.
crate-type = ["cdylib", "rlib"]

[dependencies]
weft-sdk = {{ path = {sdk:?} }}
serde = {{ version = "1", features = ["derive"] }}

[dev-dependencies]
weft-harness = {{ path = {harness:?} }}
serde_json = "1"

# As in weft's workspace, so the build shares weft's compiled dependencies (wasmtime).
[profile.release]
debug = "line-tables-only"

# As weft's `guest` profile: opt-level 3 made weft's policy filters' hook calls cheaper than
# "s" did, for modules ~10 % larger.
[profile.release.package."{name}"]
opt-level = 3
"#,
        sdk = root.join("sdk").display().to_string(),
        harness = root.join("harness").display().to_string(),
    )
}

fn cargo_config(target_dir: &Path) -> String {
    format!(
        "# Share weft's build directory: the harness's runtime (wasmtime) is already built there.\n\
         # Delete this file to build in ./target instead.\n\
         [build]\ntarget-dir = {:?}\n",
        target_dir.display().to_string()
    )
}

const LIB_RS: &str = r#"//! {name}: a weft filter. It adds `x-greeting` to every request it lets through and answers
//! 403 to requests that carry `x-block`.

use serde::Deserialize;
use weft_sdk::{Action, Filter, LocalResponse, Request, log};

/// The filter's config: the `config:` of its entry in the proxy's config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The value of the `x-greeting` request header.
    pub greeting: String,
}

/// The filter: one instance per wasm instance, built from the config by `new`.
pub struct Greeter {
    greeting: String,
}

impl Filter for Greeter {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        if config.greeting.is_empty() {
            return Err("config field `greeting`: must not be empty".to_owned());
        }
        Ok(Self {
            greeting: config.greeting,
        })
    }

    fn on_request_headers(&self, request: &Request) -> Action {
        if request.header("x-block").is_some() {
            log::info(&format!("blocked {}", request.path()));
            return Action::Respond(LocalResponse::new(403).body("blocked\n"));
        }
        // Only fails for an invalid value, which `new` could check; a filter must not panic.
        let _ = request.set_header("x-greeting", &self.greeting);
        Action::Continue
    }
}

weft_sdk::export_filter!(Greeter);
"#;

const HARNESS_RS: &str = r#"//! {name} on the proxy's own runtime: `cargo test --release` builds the filter for
//! wasm32-wasip2 and runs it in-process.

use weft_harness::{Decision, Harness, LogLevel, TestRequest};

fn filter() -> Harness {
    let wasm = weft_harness::build_this_crate!();
    Harness::builder("{name}", &wasm)
        .config(serde_json::json!({ "greeting": "hello" }))
        .load()
        .expect("the filter accepts its config")
}

#[test]
fn adds_the_greeting() {
    let mut request = TestRequest::get("/");
    assert_eq!(filter().decide(&mut request).unwrap(), Decision::Continue);
    assert_eq!(request.header_value("x-greeting"), Some("hello"));
}

#[test]
fn blocks_requests_with_x_block_and_logs_it() {
    let filter = filter();
    let mut request = TestRequest::get("/admin").header("x-block", "1");
    assert_eq!(filter.decide(&mut request).unwrap(), Decision::Respond(403));
    let logs = filter.take_logs();
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].level, LogLevel::Info);
    assert_eq!(logs[0].message, "blocked /admin");
}

#[test]
fn an_empty_greeting_is_rejected_naming_the_field() {
    let wasm = weft_harness::build_this_crate!();
    let error = Harness::builder("{name}", &wasm)
        .config(serde_json::json!({ "greeting": "" }))
        .load()
        .expect_err("an empty greeting is refused");
    assert!(error.to_string().contains("greeting"), "{error}");
}
"#;

const CONFIG_YAML: &str = "greeting: hello\n";

const CASES_YAML: &str = r#"# weft filter test FILTER.wasm --config config.yaml --cases cases.yaml
cases:
  - name: a plain request gets the greeting
    request: { method: GET, path: /hello }
    expect:
      action: continue
      request_headers: { x-greeting: hello }

  - name: x-block is refused
    request: { path: /admin, headers: { x-block: "1" } }
    expect:
      action: respond
      status: 403
      body: "blocked\n"
      request_headers: { x-greeting: null }
      logs: ["blocked /admin"]
"#;

const README_MD: &str = r#"# {name}

A weft filter. It adds `x-greeting` to every request it lets through and answers 403 to
requests that carry `x-block`.

## Config

| Field | Type | Meaning |
|---|---|---|
| `greeting` | non-empty string, required | The value of the `x-greeting` request header. |

## Where weft comes from

`weft-sdk` and `weft-harness` are not published yet: `Cargo.toml` takes them by path from the
weft checkout given to `weft filter new --sdk-path` ({sdk}). To move the crate to another
machine, change those two paths (or run `weft filter new` there again).

## Build, test, run

```sh
cargo test --release                               # harness tests: builds the filter, runs it in-process
cargo build --release --target wasm32-wasip2       # the component: {target}/wasm32-wasip2/release/{lib}.wasm
weft filter test {target}/wasm32-wasip2/release/{lib}.wasm --config config.yaml --cases cases.yaml
```

Then load it in the proxy:

```yaml
listeners:
  - name: inbound
    address: 127.0.0.1:8080
    filters:
      - name: {name}
        module: {target}/wasm32-wasip2/release/{lib}.wasm
        config: { greeting: hello }
    routes:
      - name: default
        match: { path: { prefix: / } }
        upstream: app
upstreams:
  - name: app
    endpoints: ["127.0.0.1:3000"]
```
"#;
