//! [`WasmMessageFilter`]: a message filter plugin as a [`MessageFilter`].

use std::sync::Arc;

use siren_api::hooks::{FilterDecision, MessageFilter, RoutingMeta};

use crate::bindings::filter::exports::siren::plugin::message_filter as wit;
use crate::config::WasmPluginConfig;
use crate::error::PluginError;
use crate::runtime::{FilterKind, Plugin, WasmRuntime};

/// A wasm message filter. It gets routing metadata only, never a payload. A plugin that fails
/// denies the message (fails closed), with the failure as the reason.
pub struct WasmMessageFilter {
    plugin: Arc<Plugin<FilterKind>>,
}

impl WasmRuntime {
    /// Loads a message filter plugin (world `filter-plugin`).
    pub fn message_filter(
        &self,
        name: &str,
        config: &WasmPluginConfig,
    ) -> Result<WasmMessageFilter, PluginError> {
        Ok(WasmMessageFilter {
            plugin: self.load(name, config)?,
        })
    }
}

impl WasmMessageFilter {
    /// The plugin's decision, or why it could not give one.
    pub fn try_check(&self, meta: &RoutingMeta) -> Result<FilterDecision, PluginError> {
        let meta = wit::RoutingMeta {
            sender: meta.sender.to_string(),
            recipient: meta.recipient.to_string(),
            recipient_devices: meta.recipient_devices,
            payload_size: meta.payload_size,
            timestamp: meta.timestamp,
        };
        let decision = self.plugin.run("check", |b, store| {
            b.siren_plugin_message_filter().call_check(store, &meta)
        })?;
        Ok(match decision {
            wit::FilterDecision::Allow => FilterDecision::Allow,
            wit::FilterDecision::Deny(reason) => FilterDecision::Deny(reason),
            wit::FilterDecision::Delay(seconds) => FilterDecision::Delay(seconds),
        })
    }
}

impl MessageFilter for WasmMessageFilter {
    fn name(&self) -> &str {
        &self.plugin.name
    }

    fn check(&self, meta: &RoutingMeta) -> FilterDecision {
        self.try_check(meta).unwrap_or_else(|e| {
            tracing::warn!(sender = %meta.sender, "message filter failed, denying: {e}");
            FilterDecision::Deny(e.to_string())
        })
    }
}
