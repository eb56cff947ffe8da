//! Where a command's scenario comes from: `--preset NAME` or `--scenario FILE` (TOML, or JSON
//! when the file ends in `.json`). Shared by `simulate`, `experiment` and `emulate`.

use anyhow::{bail, Context, Result};
use sim_core::scenario::{self, Scenario};
use std::path::Path;

/// The scenario named by a preset or read from a file; `None` when neither was given (each
/// command decides what that means); an error when both were, or the file is bad.
pub fn load(preset: Option<&str>, file: Option<&Path>) -> Result<Option<Scenario>> {
    match (preset, file) {
        (Some(name), None) => Ok(Some(scenario::preset(name)?)),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("while reading scenario {}", path.display()))?;
            let json = path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| e.eq_ignore_ascii_case("json"));
            let parsed = if json {
                Scenario::from_json(&text)
            } else {
                Scenario::from_toml(&text)
            };
            Ok(Some(parsed.with_context(|| {
                format!("in scenario {}", path.display())
            })?))
        }
        (None, None) => Ok(None),
        (Some(_), Some(_)) => bail!("give either --preset or --scenario, not both"),
    }
}

/// The message for a command that needs a scenario and got neither option.
pub fn missing(alternatives: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "give a scenario: --preset NAME (one of {}){alternatives}",
        scenario::PRESET_NAMES.join(", ")
    )
}
