//! Process-wide logging: `tracing` to stderr as text or JSON, filtered by `APPIZER_LOG`
//! or `log.level`. Access logs come from the gateway under the `appizer::access` target.

use std::io::IsTerminal;

use appizer_core::config::{LogConfig, LogFormat};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `env_filter` (from `APPIZER_LOG`) beats the config.
pub fn init_logging(config: &LogConfig, env_filter: Option<String>) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(env_filter.as_deref().unwrap_or(&config.level))
        .map_err(|e| anyhow::anyhow!("invalid log filter: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let installed = match config.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}
