//! The wasm engine, the epoch ticker, loading with its checks, and the instance of each plugin
//! with its sandbox limits.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime::{Config, Engine, ResourceLimiter, Store, Trap};

use crate::bindings;
use crate::config::WasmPluginConfig;
use crate::error::PluginError;

/// The version of the `siren:plugin` WIT package this host speaks.
pub const INTERFACE_VERSION: &str = "0.1.0";

/// The WIT package name, without version.
pub const INTERFACE_PACKAGE: &str = "siren:plugin";

/// The default period of the epoch ticker: the granularity of call deadlines.
pub const DEFAULT_EPOCH_TICK: Duration = Duration::from_millis(10);

/// Longest guest log line kept, in bytes.
const MAX_LOG_LINE: usize = 1024;
/// Guest log lines kept per call; the rest are counted and dropped.
const MAX_LOGS_PER_CALL: u32 = 64;

/// The kinds of plugin, one per world of the WIT package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PluginKind {
    /// An authentication mechanism (`auth-plugin`).
    AuthMechanism,
    /// A credential backend (`credentials-plugin`).
    Credentials,
    /// A federation policy (`federation-plugin`).
    FederationPolicy,
    /// A message filter (`filter-plugin`).
    MessageFilter,
    /// A directory event hook (`directory-plugin`).
    DirectoryHook,
    /// A key-value storage engine (`kv-plugin`).
    KvEngine,
}

impl PluginKind {
    /// Every kind.
    pub const ALL: [PluginKind; 6] = [
        PluginKind::AuthMechanism,
        PluginKind::Credentials,
        PluginKind::FederationPolicy,
        PluginKind::MessageFilter,
        PluginKind::DirectoryHook,
        PluginKind::KvEngine,
    ];

    /// The WIT interface the kind's world exports (`federation-policy`).
    pub fn interface(self) -> &'static str {
        match self {
            PluginKind::AuthMechanism => "auth-mechanism",
            PluginKind::Credentials => "credentials",
            PluginKind::FederationPolicy => "federation-policy",
            PluginKind::MessageFilter => "message-filter",
            PluginKind::DirectoryHook => "directory-hook",
            PluginKind::KvEngine => "kv-engine",
        }
    }

    /// The WIT world a plugin of this kind is built against (`federation-plugin`).
    pub fn world(self) -> &'static str {
        match self {
            PluginKind::AuthMechanism => "auth-plugin",
            PluginKind::Credentials => "credentials-plugin",
            PluginKind::FederationPolicy => "federation-plugin",
            PluginKind::MessageFilter => "filter-plugin",
            PluginKind::DirectoryHook => "directory-plugin",
            PluginKind::KvEngine => "kv-plugin",
        }
    }

    /// The full name of the interface this host expects the plugin to export.
    pub fn export_name(self) -> String {
        format!(
            "{INTERFACE_PACKAGE}/{}@{INTERFACE_VERSION}",
            self.interface()
        )
    }
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PluginKind::AuthMechanism => "auth mechanism",
            PluginKind::Credentials => "credential backend",
            PluginKind::FederationPolicy => "federation policy",
            PluginKind::MessageFilter => "message filter",
            PluginKind::DirectoryHook => "directory hook",
            PluginKind::KvEngine => "KV engine",
        })
    }
}

/// What a component file is, as read without running it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    /// The interface version it implements (`0.1.0`).
    pub interface: String,
    /// The kinds of plugin it exports (usually one).
    pub kinds: Vec<PluginKind>,
}

/// The wasm engine that runs plugins: one per server.
///
/// It owns a wasmtime [`Engine`] configured for the component model with epoch interruption,
/// one ticker thread that advances the engine's epoch every tick (10 ms by default; the thread
/// ends when the engine and every plugin loaded from it are dropped), the linker holding the
/// only import plugins get (`siren:plugin/host`: logging), and a cache of compiled components
/// so loading the same file twice compiles it once.
///
/// Load plugins with the per-kind methods ([`WasmRuntime::federation_policy`], …). Each
/// plugin then lives on its own: it keeps the engine alive.
pub struct WasmRuntime {
    engine: Engine,
    linker: Arc<Linker<HostState>>,
    tick: Duration,
    compiled: Mutex<HashMap<u64, (Vec<u8>, Component)>>,
}

impl std::fmt::Debug for WasmRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmRuntime")
            .field("tick", &self.tick)
            .finish_non_exhaustive()
    }
}

impl WasmRuntime {
    /// A runtime with the default epoch tick (10 ms).
    pub fn new() -> Result<Self, PluginError> {
        Self::with_epoch_tick(DEFAULT_EPOCH_TICK)
    }

    /// A runtime whose deadlines are checked every `tick` (at least 1 ms).
    pub fn with_epoch_tick(tick: Duration) -> Result<Self, PluginError> {
        let tick = tick.max(Duration::from_millis(1));
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.wasm_component_model(true);
        let engine = Engine::new(&config).map_err(|e| PluginError::Engine(format!("{e:#}")))?;

        let weak = engine.weak();
        std::thread::Builder::new()
            .name("siren-wasm-epoch".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(tick);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(|e| PluginError::Engine(format!("cannot start the epoch ticker: {e}")))?;

        let mut linker = Linker::new(&engine);
        bindings::federation::FederationPlugin::add_to_linker::<
            HostState,
            wasmtime::component::HasSelf<HostState>,
        >(&mut linker, |state| state)
        .map_err(|e| PluginError::Engine(format!("{e:#}")))?;

        Ok(WasmRuntime {
            engine,
            linker: Arc::new(linker),
            tick,
            compiled: Mutex::new(HashMap::new()),
        })
    }

    /// Reads a component without running it: its interface version and the kinds it exports.
    /// `name` is only used in errors.
    pub fn inspect(&self, name: &str, path: &Path) -> Result<PluginInfo, PluginError> {
        let component = self.compile(name, path)?;
        let interface = self.check_version(name, path, &component)?;
        let ty = component.component_type();
        let exports: Vec<&str> = ty.exports(&self.engine).map(|(n, _)| n).collect();
        let kinds = PluginKind::ALL
            .into_iter()
            .filter(|k| {
                exports.iter().any(|e| {
                    e.strip_prefix(INTERFACE_PACKAGE)
                        .and_then(|r| r.strip_prefix('/'))
                        .is_some_and(|r| r.split('@').next() == Some(k.interface()))
                })
            })
            .collect();
        Ok(PluginInfo { interface, kinds })
    }

    /// Reads and compiles the file (or takes it from the cache).
    fn compile(&self, name: &str, path: &Path) -> Result<Component, PluginError> {
        let bytes = std::fs::read(path).map_err(|e| PluginError::Read {
            name: name.to_owned(),
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let invalid = |message: String| PluginError::Invalid {
            name: name.to_owned(),
            path: path.to_owned(),
            message,
        };
        if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
            return Err(invalid(
                "no WebAssembly header (is it a .wasm file?)".to_owned(),
            ));
        }
        if bytes[4..8] == [1, 0, 0, 0] {
            return Err(invalid(
                "it is a core WebAssembly module, not a component; wrap it with \
                 `wasm-tools component new` (scripts/build-plugins.sh does)"
                    .to_owned(),
            ));
        }
        let mut hasher = DefaultHasher::new();
        bytes.hash(&mut hasher);
        let key = hasher.finish();
        if let Some((cached, component)) = lock(&self.compiled).get(&key)
            && *cached == bytes
        {
            return Ok(component.clone());
        }
        let component =
            Component::new(&self.engine, &bytes).map_err(|e| invalid(format!("{e:#}")))?;
        lock(&self.compiled).insert(key, (bytes, component.clone()));
        Ok(component)
    }

    /// Finds the interface version in the component's import and export names; refuses any
    /// other than [`INTERFACE_VERSION`].
    fn check_version(
        &self,
        name: &str,
        path: &Path,
        component: &Component,
    ) -> Result<String, PluginError> {
        let ty = component.component_type();
        let names = ty
            .exports(&self.engine)
            .map(|(n, _)| n)
            .chain(ty.imports(&self.engine).map(|(n, _)| n));
        for item in names {
            if let Some(rest) = item
                .strip_prefix(INTERFACE_PACKAGE)
                .and_then(|r| r.strip_prefix('/'))
            {
                let found = rest.split_once('@').map_or("(unversioned)", |(_, v)| v);
                if found != INTERFACE_VERSION {
                    return Err(PluginError::Version {
                        name: name.to_owned(),
                        path: path.to_owned(),
                        found: found.to_owned(),
                        expected: INTERFACE_VERSION.to_owned(),
                    });
                }
            }
        }
        Ok(INTERFACE_VERSION.to_owned())
    }

    /// Checks that the component is a plugin of `kind` that imports nothing but the host
    /// interface.
    fn check_shape(
        &self,
        name: &str,
        path: &Path,
        component: &Component,
        kind: PluginKind,
    ) -> Result<(), PluginError> {
        let mismatch = |message: String| PluginError::Mismatch {
            name: name.to_owned(),
            path: path.to_owned(),
            message,
        };
        let ty = component.component_type();
        let host = format!("{INTERFACE_PACKAGE}/host@{INTERFACE_VERSION}");
        for (import, _) in ty.imports(&self.engine) {
            if import != host {
                return Err(mismatch(format!(
                    "imports {import}, which this server does not provide: plugins get \
                     {host} only (no WASI, filesystem, network or clock)"
                )));
            }
        }
        let want = kind.export_name();
        let exports: Vec<&str> = ty.exports(&self.engine).map(|(n, _)| n).collect();
        if !exports.contains(&want.as_str()) {
            return Err(mismatch(format!(
                "is not a {kind} plugin: it does not export {want} (it exports: {})",
                exports.join(", ")
            )));
        }
        Ok(())
    }

    /// Loads a plugin of kind `K`: compile, check, instantiate, check the version the plugin
    /// reports, and call its `init`.
    pub(crate) fn load<K: Kind>(
        &self,
        name: &str,
        config: &WasmPluginConfig,
    ) -> Result<Arc<Plugin<K>>, PluginError> {
        config.check().map_err(|message| PluginError::Config {
            name: name.to_owned(),
            message,
        })?;
        let path = &config.path;
        let component = self.compile(name, path)?;
        self.check_version(name, path, &component)?;
        self.check_shape(name, path, &component, K::KIND)?;
        let mismatch = |e: wasmtime::Error| PluginError::Mismatch {
            name: name.to_owned(),
            path: path.to_owned(),
            message: format!("{e:#}"),
        };
        let pre =
            K::pre(self.linker.instantiate_pre(&component).map_err(mismatch)?).map_err(mismatch)?;
        let tick_ms = self.tick.as_millis().max(1) as u64;
        let plugin = Plugin {
            name: Arc::from(name),
            path: path.clone(),
            engine: self.engine.clone(),
            pre,
            memory_limit_mib: config.memory_limit_mib,
            deadline_ms: config.deadline_ms,
            // Interrupted between `deadline` and `deadline + 2 ticks` after the call starts.
            deadline_ticks: config.deadline_ms.div_ceil(tick_ms) + 1,
            config: config
                .config
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            state: Mutex::new(State {
                live: None,
                generation: 0,
                dead: None,
            }),
            stats: crate::stats::for_plugin(name),
        };
        {
            let mut state = plugin.lock_state();
            plugin.ensure(&mut state)?;
        }
        Ok(Arc::new(plugin))
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

// ---------------------------------------------------------------------------------------------
// The store data: limits and the host import.

/// What the host keeps per plugin instance.
pub(crate) struct HostState {
    plugin: Arc<str>,
    limits: Limits,
    logs_this_call: u32,
    /// The panic message the guest logged during the current call, if any (the Rust SDK's
    /// panic hook logs `plugin panicked: …` at level error just before trapping).
    panic: Option<String>,
}

/// The prefix of a guest's panic report.
const PANIC_PREFIX: &str = "plugin panicked: ";

/// The memory and table limits of one instance.
struct Limits {
    memory_bytes: usize,
    /// Bytes of every linear memory of the instance together (a component may have several).
    used: usize,
    /// Set when a growth was refused during the current call.
    exceeded: bool,
}

impl ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // The limit is for the instance: all its memories together. Refused growth makes
        // `memory.grow` return -1, as the spec says; a guest that cannot cope traps, and the
        // flag turns that trap into a "memory limit" error.
        let total = self.used.saturating_sub(current).saturating_add(desired);
        if total > self.memory_bytes {
            self.exceeded = true;
            return Ok(false);
        }
        self.used = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }

    fn instances(&self) -> usize {
        64
    }

    fn tables(&self) -> usize {
        64
    }

    fn memories(&self) -> usize {
        16
    }
}

impl bindings::federation::siren::plugin::host::Host for HostState {
    fn log(&mut self, level: bindings::federation::siren::plugin::host::Level, message: String) {
        use bindings::federation::siren::plugin::host::Level;
        if level == Level::Error
            && let Some(report) = message.strip_prefix(PANIC_PREFIX)
        {
            let mut report = report.replace('\n', " ");
            truncate_utf8(&mut report, MAX_LOG_LINE);
            self.panic = Some(report);
        }
        self.logs_this_call = self.logs_this_call.saturating_add(1);
        if self.logs_this_call > MAX_LOGS_PER_CALL {
            if self.logs_this_call == MAX_LOGS_PER_CALL + 1 {
                tracing::warn!(target: "siren_plugins::guest", plugin = %self.plugin,
                    "further log lines of this call dropped");
            }
            return;
        }
        let mut message = message;
        if truncate_utf8(&mut message, MAX_LOG_LINE) {
            message.push('…');
        }
        let plugin = &*self.plugin;
        match level {
            Level::Error => tracing::error!(target: "siren_plugins::guest", plugin, "{message}"),
            Level::Warn => tracing::warn!(target: "siren_plugins::guest", plugin, "{message}"),
            Level::Info => tracing::info!(target: "siren_plugins::guest", plugin, "{message}"),
            Level::Debug => tracing::debug!(target: "siren_plugins::guest", plugin, "{message}"),
            Level::Trace => tracing::trace!(target: "siren_plugins::guest", plugin, "{message}"),
        }
    }
}

/// Cuts `s` to at most `max` bytes at a character boundary; whether it cut.
fn truncate_utf8(s: &mut String, max: usize) -> bool {
    if s.len() <= max {
        return false;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    true
}

// ---------------------------------------------------------------------------------------------
// Kinds and plugins.

/// What the host needs to know about one world's generated bindings.
pub(crate) trait Kind: 'static {
    /// The kind.
    const KIND: PluginKind;
    /// Whether an instance that failed is replaced by a fresh one (stateless plugins), or the
    /// plugin stays out of service (a KV engine whose data lived in the lost instance).
    const RESTARTABLE: bool;
    /// The pre-instantiated component.
    type Pre: Send + Sync + 'static;
    /// The exports of an instance.
    type Bindings: Send + 'static;

    fn pre(pre: InstancePre<HostState>) -> wasmtime::Result<Self::Pre>;
    fn instantiate(
        pre: &Self::Pre,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<Self::Bindings>;
    fn interface_version(
        b: &Self::Bindings,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<String>;
    fn init(
        b: &Self::Bindings,
        store: &mut Store<HostState>,
        config: &[(String, String)],
    ) -> wasmtime::Result<Result<(), String>>;
}

macro_rules! kinds {
    ($( $kind:ident: $module:ident::$world:ident / $pre:ident, $plugin_kind:expr, $restart:expr; )*) => {
        $(
            pub(crate) struct $kind;

            impl Kind for $kind {
                const KIND: PluginKind = $plugin_kind;
                const RESTARTABLE: bool = $restart;
                type Pre = bindings::$module::$pre<HostState>;
                type Bindings = bindings::$module::$world;

                fn pre(pre: InstancePre<HostState>) -> wasmtime::Result<Self::Pre> {
                    bindings::$module::$pre::new(pre)
                }
                fn instantiate(
                    pre: &Self::Pre,
                    store: &mut Store<HostState>,
                ) -> wasmtime::Result<Self::Bindings> {
                    pre.instantiate(store)
                }
                fn interface_version(
                    b: &Self::Bindings,
                    store: &mut Store<HostState>,
                ) -> wasmtime::Result<String> {
                    b.call_interface_version(store)
                }
                fn init(
                    b: &Self::Bindings,
                    store: &mut Store<HostState>,
                    config: &[(String, String)],
                ) -> wasmtime::Result<Result<(), String>> {
                    b.call_init(store, config)
                }
            }
        )*
    };
}

kinds! {
    AuthKind: auth::AuthPlugin / AuthPluginPre, PluginKind::AuthMechanism, true;
    CredentialsKind: credentials::CredentialsPlugin / CredentialsPluginPre, PluginKind::Credentials, true;
    FederationKind: federation::FederationPlugin / FederationPluginPre, PluginKind::FederationPolicy, true;
    FilterKind: filter::FilterPlugin / FilterPluginPre, PluginKind::MessageFilter, true;
    DirectoryKind: directory::DirectoryPlugin / DirectoryPluginPre, PluginKind::DirectoryHook, true;
    KvKind: kv::KvPlugin / KvPluginPre, PluginKind::KvEngine, false;
}

/// One loaded plugin: its pre-instantiated component, its limits, and its current instance
/// behind a mutex (calls from several threads take turns; each call is bounded by the
/// deadline).
pub(crate) struct Plugin<K: Kind> {
    pub(crate) name: Arc<str>,
    path: PathBuf,
    engine: Engine,
    pre: K::Pre,
    memory_limit_mib: u32,
    deadline_ms: u64,
    deadline_ticks: u64,
    config: Vec<(String, String)>,
    state: Mutex<State<K>>,
    /// Calls, failures and deadline hits, for the server's metrics.
    stats: Arc<crate::stats::CallStats>,
}

struct State<K: Kind> {
    live: Option<Live<K>>,
    /// Counts instances made, so that handles into an instance (auth exchanges) can tell when
    /// it was replaced.
    generation: u64,
    /// Why a non-restartable plugin is out of service.
    dead: Option<String>,
}

struct Live<K: Kind> {
    store: Store<HostState>,
    bindings: K::Bindings,
}

impl<K: Kind> Plugin<K> {
    fn lock_state(&self) -> MutexGuard<'_, State<K>> {
        match self.state.lock() {
            Ok(guard) => guard,
            Err(poisoned) => {
                // A panic in host code during a call: the instance may be mid-call; drop it.
                self.state.clear_poison();
                let mut guard = poisoned.into_inner();
                guard.live = None;
                guard
            }
        }
    }

    /// Makes sure there is a live instance; returns its generation.
    fn ensure(&self, state: &mut State<K>) -> Result<u64, PluginError> {
        if state.live.is_none() {
            if let Some(message) = &state.dead {
                return Err(PluginError::Dead {
                    name: self.name.to_string(),
                    message: message.clone(),
                });
            }
            state.live = Some(self.instantiate()?);
            state.generation += 1;
        }
        Ok(state.generation)
    }

    /// A fresh instance, its version checked and `init` called.
    fn instantiate(&self) -> Result<Live<K>, PluginError> {
        let mut store = Store::new(
            &self.engine,
            HostState {
                plugin: self.name.clone(),
                limits: Limits {
                    memory_bytes: (self.memory_limit_mib as usize) << 20,
                    used: 0,
                    exceeded: false,
                },
                logs_this_call: 0,
                panic: None,
            },
        );
        store.limiter(|state| &mut state.limits);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(self.deadline_ticks);
        let bindings = K::instantiate(&self.pre, &mut store)
            .map_err(|e| self.classify(&store, e, "instantiation"))?;
        store.set_epoch_deadline(self.deadline_ticks);
        let version = K::interface_version(&bindings, &mut store)
            .map_err(|e| self.classify(&store, e, "interface-version"))?;
        if version != INTERFACE_VERSION {
            return Err(PluginError::Version {
                name: self.name.to_string(),
                path: self.path.clone(),
                found: version,
                expected: INTERFACE_VERSION.to_owned(),
            });
        }
        store.set_epoch_deadline(self.deadline_ticks);
        store.data_mut().logs_this_call = 0;
        K::init(&bindings, &mut store, &self.config)
            .map_err(|e| self.classify(&store, e, "init"))?
            .map_err(|message| PluginError::Init {
                name: self.name.to_string(),
                message,
            })?;
        Ok(Live { store, bindings })
    }

    /// Turns a failed call into a clear error.
    fn classify(&self, store: &Store<HostState>, e: wasmtime::Error, what: &str) -> PluginError {
        let name = self.name.to_string();
        if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
            return PluginError::Deadline {
                name,
                deadline_ms: self.deadline_ms,
            };
        }
        if store.data().limits.exceeded {
            return PluginError::Memory {
                name,
                limit_mib: self.memory_limit_mib,
            };
        }
        if let Some(panic) = &store.data().panic {
            return PluginError::Trap {
                name,
                message: format!("{panic} (during {what})"),
            };
        }
        let mut message = e.root_cause().to_string();
        if let Some(bt) = e.downcast_ref::<wasmtime::WasmBacktrace>()
            && let Some(func) = bt.frames().iter().find_map(|f| f.func_name())
        {
            message.push_str(&format!(" (in {func})"));
        }
        PluginError::Trap {
            name,
            message: format!("{message} (during {what})"),
        }
    }

    /// Runs `f` on the live instance (making one if needed) under the deadline. With
    /// `generation`, runs only if the live instance is still that one (else fails).
    ///
    /// A failed call (trap, deadline, memory) discards the instance: the next call gets a
    /// fresh one, or, for a plugin that is not restartable, the error saying it is out of
    /// service.
    pub(crate) fn call<R>(
        &self,
        generation: Option<u64>,
        what: &str,
        f: impl FnOnce(&K::Bindings, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<(R, u64), PluginError> {
        let outcome = self.call_inner(generation, what, f);
        self.stats.record(&outcome);
        outcome
    }

    fn call_inner<R>(
        &self,
        generation: Option<u64>,
        what: &str,
        f: impl FnOnce(&K::Bindings, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<(R, u64), PluginError> {
        let mut state = self.lock_state();
        if let Some(wanted) = generation
            && (state.live.is_none() || state.generation != wanted)
        {
            return Err(PluginError::Guest {
                name: self.name.to_string(),
                message: "the plugin instance this handle belonged to was replaced after a \
                          failure"
                    .to_owned(),
            });
        }
        let current = self.ensure(&mut state)?;
        let Some(live) = state.live.as_mut() else {
            return Err(PluginError::Engine(
                "no live instance after ensure".to_owned(),
            ));
        };
        live.store.set_epoch_deadline(self.deadline_ticks);
        let data = live.store.data_mut();
        data.limits.exceeded = false;
        data.logs_this_call = 0;
        data.panic = None;
        match f(&live.bindings, &mut live.store) {
            Ok(r) => Ok((r, current)),
            Err(e) => {
                let err = self.classify(&live.store, e, what);
                state.live = None;
                if !K::RESTARTABLE {
                    state.dead = Some(err.to_string());
                }
                tracing::warn!(plugin = %self.name, "{err}; instance discarded");
                Err(err)
            }
        }
    }

    /// Runs `f` on the live instance; the common case without handles.
    pub(crate) fn run<R>(
        &self,
        what: &str,
        f: impl FnOnce(&K::Bindings, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        self.call(None, what, f).map(|(r, _)| r)
    }
}
