//! Reading a plugin's config.

use crate::error::SamplerError;

/// Parses the resolved RON config into `T`. Give `T`
/// `#[serde(crate = "lh_plugin_api::serde", deny_unknown_fields)]` so that
/// the derive needs no serde dependency of the plugin's own and an unknown
/// key is an error naming it, with its line and column.
pub fn parse_config<T: serde::de::DeserializeOwned>(ron_text: &str) -> Result<T, SamplerError> {
    ron::Options::default()
        .with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME)
        .from_str(ron_text)
        .map_err(|e| SamplerError::fatal(format!("config {}:{}: {}", e.span.start.line, e.span.start.col, e.code)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_unknown_keys_are_errors() {
        #[derive(crate::Deserialize, Debug)]
        #[serde(crate = "crate::serde", deny_unknown_fields)]
        #[allow(dead_code)]
        struct C {
            steps: usize,
        }
        assert_eq!(parse_config::<C>("(steps: 3)").unwrap().steps, 3);
        assert_eq!(parse_config::<C>("(\n    steps: 3,\n)").unwrap().steps, 3);
        let e = parse_config::<C>("(steps: 3,\n stepz: 4)").unwrap_err();
        assert!(e.message.contains("2:") && e.message.contains("stepz"), "{}", e.message);
    }
}
