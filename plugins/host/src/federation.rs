//! [`WasmFederationPolicy`]: a federation policy plugin as a [`FederationPolicy`].

use std::sync::Arc;

use siren_api::ServerName;
use siren_api::federation::{Decision, Direction, FederationPolicy};

use crate::bindings::federation::exports::siren::plugin::federation_policy as wit;
use crate::config::WasmPluginConfig;
use crate::error::PluginError;
use crate::runtime::{FederationKind, Plugin, WasmRuntime};

/// A wasm federation policy. A plugin that fails (traps, runs past its deadline) denies the
/// peer: the policy fails closed, with the failure as the reason.
pub struct WasmFederationPolicy {
    plugin: Arc<Plugin<FederationKind>>,
}

impl WasmRuntime {
    /// Loads a federation policy plugin (world `federation-plugin`).
    pub fn federation_policy(
        &self,
        name: &str,
        config: &WasmPluginConfig,
    ) -> Result<WasmFederationPolicy, PluginError> {
        Ok(WasmFederationPolicy {
            plugin: self.load(name, config)?,
        })
    }
}

impl WasmFederationPolicy {
    /// The plugin's decision, or why it could not give one.
    pub fn try_decide(
        &self,
        peer: &ServerName,
        direction: Direction,
    ) -> Result<Decision, PluginError> {
        let direction = match direction {
            Direction::Outbound => wit::Direction::Outbound,
            Direction::Inbound => wit::Direction::Inbound,
        };
        let decision = self.plugin.run("decide", |b, store| {
            b.siren_plugin_federation_policy()
                .call_decide(store, peer.as_str(), direction)
        })?;
        Ok(match decision {
            wit::Decision::Allow => Decision::Allow,
            wit::Decision::Deny(reason) => Decision::Deny(reason),
        })
    }
}

impl FederationPolicy for WasmFederationPolicy {
    fn name(&self) -> &str {
        &self.plugin.name
    }

    fn decide(&self, peer: &ServerName, direction: Direction) -> Decision {
        self.try_decide(peer, direction).unwrap_or_else(|e| {
            tracing::warn!(%peer, "federation policy failed, denying: {e}");
            Decision::Deny(e.to_string())
        })
    }
}
