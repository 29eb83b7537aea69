//! Loads real native plugins: the Rust sample, the two broken fixtures and C plugins compiled
//! here with `cc`.
//!
//! The Rust plugin libraries are workspace members built by `cargo build --workspace` (or
//! `cargo build -p siren-native-sample-auth -p siren-native-test-bad-abi
//! -p siren-native-test-missing-symbol`); `cargo test` does not build cdylibs its tests do not
//! link, so a test fails saying so when one is missing. The C tests need `cc`, which Rust's
//! own linking on Linux needs anyway.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use siren_api::auth::CredentialBackend;
use siren_api::registry::Origin;
use siren_api::{ErrorCode, Username};
use siren_plugin_native::{NativeCredentials, NativePluginConfig, load};

/// The directory of the build's libraries: `target/<profile>`, from `target/<profile>/deps/<test>`.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

fn library_file(crate_name: &str) -> String {
    format!(
        "{}{}{}",
        std::env::consts::DLL_PREFIX,
        crate_name.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    )
}

/// The built cdylib of workspace package `package`.
fn cdylib(package: &str) -> PathBuf {
    let path = target_dir().join(library_file(package));
    assert!(
        path.exists(),
        "{} is missing: build the plugin libraries first with `cargo build --workspace` \
         (or `cargo build -p {package}`); `cargo test` alone does not build them",
        path.display()
    );
    path
}

fn config(path: &Path, entries: &[(&str, &str)]) -> NativePluginConfig {
    NativePluginConfig {
        path: path.to_path_buf(),
        config: entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

fn sample(users: &str) -> NativeCredentials {
    let path = cdylib("siren-native-sample-auth");
    load(
        &config(&path, &[("users", users)]),
        Path::new("/nonexistent"),
    )
    .unwrap()
}

fn user(name: &str) -> Username {
    Username::parse(name).unwrap()
}

fn load_err(config: &NativePluginConfig) -> siren_api::Error {
    let err = load(config, Path::new("/")).unwrap_err();
    assert_eq!(err.code, ErrorCode::Internal, "{err}");
    err
}

#[tokio::test]
async fn sample_verifies_its_users() {
    let creds = sample("alice:pw1,bob:correct horse");
    assert_eq!(creds.name(), "sample-auth");
    assert_eq!(creds.abi_version(), 1);
    let path = cdylib("siren-native-sample-auth");
    assert_eq!(creds.path(), path);
    assert_eq!(
        creds.origin(),
        Origin::Plugin {
            path: path.display().to_string(),
            interface: "native-abi-1".to_owned()
        }
    );

    assert!(creds.verify(&user("alice"), "pw1").await.unwrap());
    assert!(creds.verify(&user("bob"), "correct horse").await.unwrap());
    assert!(!creds.verify(&user("alice"), "pw2").await.unwrap());
    assert!(!creds.verify(&user("alice"), "pw1 ").await.unwrap());
    assert!(!creds.verify(&user("alice"), "").await.unwrap());
    assert!(!creds.verify(&user("alice"), "correct horse").await.unwrap());
    assert!(!creds.verify(&user("mallory"), "pw1").await.unwrap());
    assert!(!creds.verify(&user("alice"), "pw1\0").await.unwrap());

    assert!(creds.user_exists(&user("alice")).await.unwrap());
    assert!(!creds.user_exists(&user("mallory")).await.unwrap());
}

#[tokio::test]
async fn a_relative_path_is_relative_to_the_base_dir() {
    cdylib("siren-native-sample-auth");
    let relative = PathBuf::from(library_file("siren-native-sample-auth"));
    let creds = load(&config(&relative, &[("users", "alice:pw1")]), &target_dir()).unwrap();
    assert!(creds.verify(&user("alice"), "pw1").await.unwrap());
}

#[tokio::test]
async fn one_library_loaded_twice_keeps_two_contexts() {
    let first = sample("alice:one");
    let second = sample("alice:two");
    assert!(first.verify(&user("alice"), "one").await.unwrap());
    assert!(!first.verify(&user("alice"), "two").await.unwrap());
    assert!(second.verify(&user("alice"), "two").await.unwrap());
    assert!(!second.verify(&user("alice"), "one").await.unwrap());
    // Dropping one (its context goes to `siren_plugin_free`) leaves the other working.
    drop(first);
    assert!(second.verify(&user("alice"), "two").await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_from_many_threads() {
    let creds = Arc::new(sample("alice:pw1,bob:pw2"));
    let mut tasks = Vec::new();
    for i in 0..64 {
        let creds = Arc::clone(&creds);
        tasks.push(tokio::spawn(async move {
            let (name, right) = if i % 2 == 0 {
                ("alice", "pw1")
            } else {
                ("bob", "pw2")
            };
            assert!(creds.verify(&user(name), right).await.unwrap());
            assert!(!creds.verify(&user(name), "nope").await.unwrap());
            assert!(creds.user_exists(&user(name)).await.unwrap());
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

#[test]
fn the_plugin_explains_a_configuration_it_refuses() {
    let path = cdylib("siren-native-sample-auth");
    let err = load_err(&config(&path, &[("users", "alice")]));
    assert_eq!(
        err.message,
        format!(
            "native plugin sample-auth ({}) refused its configuration: `users` entry \"alice\" \
             is not name:password",
            path.display()
        )
    );
    let err = load_err(&config(&path, &[("users", "alice:x"), ("colour", "red")]));
    assert!(err.message.contains("unknown setting \"colour\""), "{err}");
    let err = load_err(&config(&path, &[]));
    assert!(err.message.contains("missing setting `users`"), "{err}");
}

#[test]
fn a_configuration_the_line_format_cannot_carry_is_refused_before_loading() {
    let err = load_err(&config(
        Path::new("/no/such/lib.so"),
        &[("users", "a:b\nc")],
    ));
    assert!(
        err.message
            .starts_with("native plugin /no/such/lib.so: config value of \"users\""),
        "{err}"
    );
}

#[test]
fn a_wrong_abi_version_is_refused_naming_both_versions_and_the_path() {
    let path = cdylib("siren-native-test-bad-abi");
    let err = load_err(&config(&path, &[]));
    // The fixture exports nothing but its version: this is the first thing looked at.
    assert_eq!(
        err.message,
        format!(
            "{} implements Siren native ABI 2; this server speaks 1 (rebuild the plugin against \
             this server's siren_plugin.h)",
            path.display()
        )
    );
}

#[test]
fn a_missing_symbol_is_refused_naming_it_and_the_path() {
    let path = cdylib("siren-native-test-missing-symbol");
    let err = load_err(&config(&path, &[]));
    let expected = format!(
        "{} does not export `siren_plugin_verify`, required by Siren native ABI 1: ",
        path.display()
    );
    assert!(err.message.starts_with(&expected), "{err}");
}

#[test]
fn a_missing_file_is_refused_naming_the_path() {
    let err = load_err(&config(Path::new("plugins/libnope.so"), &[]));
    assert_eq!(
        err.message,
        "native plugin /plugins/libnope.so: no such file"
    );
    let dir = tempfile::tempdir().unwrap();
    let err = load_err(&config(dir.path(), &[]));
    assert_eq!(
        err.message,
        format!("native plugin {}: not a regular file", dir.path().display())
    );
}

#[test]
fn a_world_writable_library_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("libcopy.so");
    std::fs::copy(cdylib("siren-native-sample-auth"), &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o666)).unwrap();
    let err = load_err(&config(&copy, &[("users", "alice:pw1")]));
    assert!(err.message.contains("world-writable"), "{err}");
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o644)).unwrap();
    load(&config(&copy, &[("users", "alice:pw1")]), Path::new("/")).unwrap();
}

#[test]
fn the_config_entry_deserialises_strictly() {
    let entry: NativePluginConfig =
        toml::from_str("path = \"libx.so\"\nconfig = { users = \"alice:pw\" }").unwrap();
    assert_eq!(entry.path, PathBuf::from("libx.so"));
    assert_eq!(
        entry.config,
        BTreeMap::from([("users".to_owned(), "alice:pw".to_owned())])
    );
    let bare: NativePluginConfig = toml::from_str("path = \"libx.so\"").unwrap();
    assert!(bare.config.is_empty());
    let err = toml::from_str::<NativePluginConfig>("path = \"x\"\nconfg = {}").unwrap_err();
    assert!(err.to_string().contains("unknown field `confg`"), "{err}");
}

/// Compiles `source` (C, against siren_plugin.h) into a shared library with `cc`.
fn compile_c(dir: &Path, name: &str, source: &Path) -> PathBuf {
    let out = dir.join(format!("lib{name}.so"));
    let include = Path::new(env!("CARGO_MANIFEST_DIR"));
    let result = Command::new("cc")
        .args([
            "-std=c11", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-I",
        ])
        .arg(include)
        .arg("-o")
        .arg(&out)
        .arg(source)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `cc` (the C ABI tests need a C compiler): {e}"));
    assert!(
        result.status.success(),
        "cc failed on {}:\n{}",
        source.display(),
        String::from_utf8_lossy(&result.stderr)
    );
    out
}

#[tokio::test]
async fn the_c_example_compiles_with_cc_and_loads() {
    let dir = tempfile::tempdir().unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/c_auth.c");
    let lib = compile_c(dir.path(), "c_auth", &source);

    let creds = load(
        &config(&lib, &[("user", "alice"), ("password", "correct horse")]),
        Path::new("/"),
    )
    .unwrap();
    assert_eq!(creds.name(), "c-auth");
    assert!(creds.verify(&user("alice"), "correct horse").await.unwrap());
    assert!(!creds.verify(&user("alice"), "correct horsE").await.unwrap());
    assert!(!creds.verify(&user("alice"), "correct").await.unwrap());
    assert!(!creds.verify(&user("bob"), "correct horse").await.unwrap());
    assert!(creds.user_exists(&user("alice")).await.unwrap());
    assert!(!creds.user_exists(&user("bob")).await.unwrap());

    let err = load_err(&config(&lib, &[("user", "alice"), ("colour", "red")]));
    assert_eq!(
        err.message,
        format!(
            "native plugin c-auth ({}) refused its configuration: unknown setting \"colour\" \
             (c-auth knows user, password)",
            lib.display()
        )
    );
}

/// A naive C plugin that treats the strings as C strings (`strcmp`), which the ABI allows: the
/// host must never let a password with a NUL inside reach it, or "secret\0anything" would pass.
#[tokio::test]
async fn a_password_with_a_nul_never_reaches_a_c_string_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("naive.c");
    std::fs::write(
        &source,
        r#"#include <string.h>
#include "siren_plugin.h"
static char ctx;
uint32_t siren_plugin_abi_version(void) { return SIREN_PLUGIN_ABI_VERSION; }
const char *siren_plugin_name(void) { return "naive"; }
void *siren_plugin_init(const uint8_t *c, size_t n, char *e, size_t cap) {
    (void)c; (void)n; (void)e; (void)cap; return &ctx;
}
int32_t siren_plugin_verify(void *x, const uint8_t *u, size_t ul, const uint8_t *p, size_t pl) {
    (void)x; (void)ul; (void)pl;
    return strcmp((const char *)u, "alice") == 0 && strcmp((const char *)p, "secret") == 0;
}
int32_t siren_plugin_user_exists(void *x, const uint8_t *u, size_t ul) {
    (void)x; (void)ul; return strcmp((const char *)u, "alice") == 0;
}
"#,
    )
    .unwrap();
    let lib = compile_c(dir.path(), "naive", &source);
    let creds = load(&config(&lib, &[]), Path::new("/")).unwrap();
    assert!(creds.verify(&user("alice"), "secret").await.unwrap());
    assert!(
        !creds
            .verify(&user("alice"), "secret\0anything")
            .await
            .unwrap()
    );
    assert!(!creds.verify(&user("alice"), "secre").await.unwrap());
}

#[test]
fn a_library_without_the_version_symbol_is_not_a_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("other.c");
    std::fs::write(&source, "int some_function(void) { return 1; }\n").unwrap();
    let lib = compile_c(dir.path(), "other", &source);
    let err = load_err(&config(&lib, &[]));
    assert!(
        err.message.starts_with(&format!(
            "{} does not export `siren_plugin_abi_version`, so it is not a Siren native plugin",
            lib.display()
        )),
        "{err}"
    );
}

#[test]
fn a_library_with_an_unresolved_symbol_fails_at_load() {
    // RTLD_NOW: an undefined function fails the load, not a later login.
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("unresolved.c");
    std::fs::write(
        &source,
        "int siren_test_not_defined_anywhere(void);\n\
         int call_it(void) { return siren_test_not_defined_anywhere(); }\n",
    )
    .unwrap();
    let lib = compile_c(dir.path(), "unresolved", &source);
    let err = load_err(&config(&lib, &[]));
    assert!(
        err.message
            .starts_with(&format!("cannot load native plugin {}: ", lib.display())),
        "{err}"
    );
    assert!(
        err.message.contains("siren_test_not_defined_anywhere"),
        "{err}"
    );
}
