//! How to reach Bedrock, and the checks a configuration must pass.

use std::fmt;
use std::time::Duration;

use aws_sdk_bedrockruntime::config::Token;

use super::mapping::{MODEL_MAPPING_ENV, ModelMapping};

/// How to reach Bedrock.
#[derive(Clone)]
pub struct BedrockConfig {
    /// The AWS region, e.g. `us-east-1`.
    pub region: String,
    /// An endpoint URL to use instead of the region's (a VPC endpoint, a stand-in);
    /// `{region}` in it stands for the region a request goes to (an access key's own).
    pub endpoint_url: Option<String>,
    /// A Bedrock API key (bearer token); `None` = the AWS default credential chain.
    pub api_key: Option<String>,
    /// Which Bedrock model serves which requested model.
    pub mapping: ModelMapping,
    /// How long to wait for a connection to Bedrock.
    pub connect_timeout: Duration,
    /// How long to wait for Bedrock's response headers (for `InvokeModel`, the whole answer); `None` = no limit.
    pub read_timeout: Option<Duration>,
    /// The `anthropic-beta` values passed on; Bedrock answers any other with
    /// "invalid beta flag", so they are dropped (default: [`BEDROCK_BETAS`]).
    pub betas: Vec<String>,
}

/// The beta values Bedrock's Anthropic models accept, per the AWS documentation (late
/// 2025). Claude Code also sends ones Bedrock refuses (`claude-code-…`, `oauth-…`,
/// `mcp-servers-…`): those must not reach it.
pub const BEDROCK_BETAS: [&str; 11] = [
    "computer-use-2024-10-22",
    "computer-use-2025-01-24",
    "token-efficient-tools-2025-02-19",
    "interleaved-thinking-2025-05-14",
    "output-128k-2025-02-19",
    "dev-full-thinking-2025-05-14",
    "context-1m-2025-08-07",
    "context-management-2025-06-27",
    "effort-2025-11-24",
    "tool-search-tool-2025-10-19",
    "tool-examples-2025-10-29",
];

// By hand, so that the API key never reaches a log line.
impl fmt::Debug for BedrockConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BedrockConfig")
            .field("region", &self.region)
            .field("endpoint_url", &self.endpoint_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "** redacted **"))
            .field("mapping", &self.mapping)
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("betas", &self.betas)
            .finish()
    }
}

/// Why a Bedrock configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BedrockConfigError {
    /// `PROXY_BEDROCK_MODEL_MAPPING` is not a JSON object.
    #[error("{MODEL_MAPPING_ENV} is not a JSON object of model names to Bedrock model ids")]
    MappingJson(#[source] serde_json::Error),
    /// An entry of `PROXY_BEDROCK_MODEL_MAPPING` does not map a model name to a Bedrock model id.
    #[error(
        "{MODEL_MAPPING_ENV}: the entry {key:?} must map a model name to a Bedrock model id (a non-empty string)"
    )]
    MappingEntry {
        /// The key of the entry, as written.
        key: String,
    },
    /// The region is empty.
    #[error("the Bedrock region is empty")]
    EmptyRegion,
    /// The endpoint URL is not an absolute `http` or `https` URL.
    #[error("the Bedrock endpoint URL is not an absolute http:// or https:// URL")]
    InvalidEndpointUrl,
    /// The API key is empty or has characters a bearer token cannot carry.
    #[error("the Bedrock API key is empty or has characters a bearer token cannot carry")]
    InvalidApiKey,
}

/// A configuration that passed its checks, with the API key as the token the SDK sends.
#[derive(Debug)]
pub(super) struct Checked {
    pub(super) region: String,
    pub(super) endpoint_url: Option<String>,
    pub(super) token: Option<Token>,
    pub(super) mapping: ModelMapping,
    pub(super) connect_timeout: Duration,
    pub(super) read_timeout: Option<Duration>,
    pub(super) betas: Vec<String>,
}

impl BedrockConfig {
    /// Refuses what would only fail later, request by request.
    pub(super) fn check(self) -> Result<Checked, BedrockConfigError> {
        let region = self.region.trim().to_owned();
        if region.is_empty() {
            return Err(BedrockConfigError::EmptyRegion);
        }
        if let Some(url) = &self.endpoint_url {
            check_endpoint_url(&url.replace("{region}", &region))?;
        }
        Ok(Checked {
            region,
            endpoint_url: self.endpoint_url,
            token: self.api_key.map(bearer_token).transpose()?,
            mapping: self.mapping,
            connect_timeout: self.connect_timeout,
            read_timeout: self.read_timeout,
            betas: self.betas,
        })
    }
}

/// Turns an API key into the bearer token the SDK sends.
fn bearer_token(key: String) -> Result<Token, BedrockConfigError> {
    let usable = !key.is_empty() && key.bytes().all(|byte| byte.is_ascii_graphic());
    if usable {
        Ok(Token::new(key, None))
    } else {
        Err(BedrockConfigError::InvalidApiKey)
    }
}

fn check_endpoint_url(url: &str) -> Result<(), BedrockConfigError> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| BedrockConfigError::InvalidEndpointUrl)?;
    let web = matches!(uri.scheme_str(), Some("http" | "https"));
    if web && uri.authority().is_some() {
        Ok(())
    } else {
        Err(BedrockConfigError::InvalidEndpointUrl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(api_key: Option<&str>, endpoint_url: Option<&str>) -> BedrockConfig {
        BedrockConfig {
            region: " us-east-1 ".into(),
            endpoint_url: endpoint_url.map(Into::into),
            api_key: api_key.map(Into::into),
            mapping: ModelMapping::defaults(),
            connect_timeout: Duration::from_secs(3),
            read_timeout: None,
            betas: Vec::new(),
        }
    }

    #[test]
    fn the_config_never_shows_the_api_key() {
        let config = config(Some("ABSKsecret"), None);
        assert!(!format!("{config:?}").contains("ABSKsecret"));
        let checked = config.check().unwrap();
        assert!(!format!("{checked:?}").contains("ABSKsecret"));
        assert_eq!(checked.token.unwrap().token(), "ABSKsecret");
    }

    #[test]
    fn a_usable_config_passes() {
        let checked = config(None, Some("http://127.0.0.1:4566")).check().unwrap();
        assert_eq!(checked.region, "us-east-1");
        assert!(checked.token.is_none());
        for url in [
            "https://bedrock-runtime.us-east-1.amazonaws.com",
            "http://[::1]:8080/",
        ] {
            assert!(
                config(Some("ABSK-key="), Some(url)).check().is_ok(),
                "{url}"
            );
        }
    }

    #[test]
    fn an_unusable_config_is_refused() {
        let mut empty_region = config(None, None);
        empty_region.region = " ".into();
        assert!(matches!(
            empty_region.check(),
            Err(BedrockConfigError::EmptyRegion)
        ));
        for key in ["", "two words", "line\nbreak"] {
            assert!(
                matches!(
                    config(Some(key), None).check(),
                    Err(BedrockConfigError::InvalidApiKey)
                ),
                "{key:?}"
            );
        }
        for url in ["127.0.0.1:4566", "ftp://host", "/model", "not a url"] {
            assert!(
                matches!(
                    config(None, Some(url)).check(),
                    Err(BedrockConfigError::InvalidEndpointUrl)
                ),
                "{url}"
            );
        }
    }
}
