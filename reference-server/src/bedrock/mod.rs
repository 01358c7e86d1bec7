//! Amazon Bedrock, spoken to in Anthropic on both sides.
//!
//! [`Bedrock::messages`] takes the JSON body a client sent to the Anthropic Messages API
//! and answers the way the Anthropic API would, through Bedrock Runtime's
//! `InvokeModel` (non-streaming) or `InvokeModelWithResponseStream` (`"stream": true`)
//! with the native Anthropic body: every field the client sent passes through
//! (images, documents, tools, fields we do not know), `model` and `stream` are dropped
//! (Bedrock takes them from the URL and the operation), `anthropic_version` becomes
//! `bedrock-2023-05-31` and the `anthropic-beta` header becomes `anthropic_beta`.
//! A stream's event-stream frames are re-emitted as Anthropic server-sent events, each
//! one as soon as it arrives; Bedrock's errors become Anthropic error bodies with the
//! status the Anthropic API would have used.
//!
//! [`ModelMapping`] says which Bedrock model serves a requested Anthropic model; a model
//! it does not know is not sent to Bedrock at all.
//!
//! ```
//! use reference_server::bedrock::ModelMapping;
//!
//! let mapping = ModelMapping::defaults().with_overrides(Some(
//!     r#"{"claude-sonnet-4-5": "eu.anthropic.claude-sonnet-4-5-20250929-v1:0"}"#,
//! ))?;
//! assert_eq!(
//!     mapping.resolve("claude-sonnet-4-5-20250929"),
//!     Some("eu.anthropic.claude-sonnet-4-5-20250929-v1:0"),
//! );
//! assert_eq!(
//!     mapping.resolve("claude-haiku-4-5"),
//!     Some("us.anthropic.claude-haiku-4-5-20251001-v1:0"),
//! );
//! assert_eq!(mapping.resolve("claude-instant-1"), None);
//! # Ok::<(), reference_server::bedrock::BedrockConfigError>(())
//! ```
//!
//! The layout: [`BedrockConfig`] and its checks in `config`, [`ModelMapping`] in
//! `mapping`, the request body in `request`, the SSE relay in `stream`, and how a
//! failure is answered in `fault`.

mod config;
mod fault;
mod mapping;
mod request;
mod stream;

use std::sync::Arc;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_bedrockruntime::config::Region;
use aws_sdk_bedrockruntime::error::ProvideErrorMetadata;
use aws_sdk_bedrockruntime::operation::RequestId;
use aws_sdk_bedrockruntime::primitives::Blob;
use axum::body::Body;
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Response, StatusCode};

pub use self::config::{BEDROCK_BETAS, BedrockConfig, BedrockConfigError};
pub use self::mapping::{MODEL_MAPPING_ENV, ModelMapping};

use self::fault::{Failure, Fault, stream_error_code};
use self::request::Invocation;
use crate::live::Swap;

/// The content type of both the request and the response bodies.
const JSON: &str = "application/json";

/// A Bedrock Runtime client that speaks Anthropic on both sides.
#[derive(Clone, Debug)]
pub struct Bedrock {
    client: aws_sdk_bedrockruntime::Client,
    region: String,
    /// The configured endpoint URL, `{region}` not yet replaced.
    endpoint_url: Option<String>,
    mapping: Swap<ModelMapping>,
    betas: Vec<String>,
}

/// Whose Bedrock a request uses, when not the server's: an access key's own region
/// (endpoint and prices) and API key (a bearer token, billed to its AWS account).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Account {
    /// The region; `None`: the server's.
    pub region: Option<String>,
    /// The Bedrock API key; `None`: the server's credential.
    pub api_key: Option<crate::crypto::Plaintext>,
}

impl Bedrock {
    /// Builds the SDK client once, without network I/O beyond what aws-config's loader does.
    ///
    /// Credentials: with an API key, the key as a bearer token and nothing else;
    /// without, the AWS default chain (environment, profile, web identity, ECS, IMDS…,
    /// resolved on first use), where the SDK also honours `AWS_BEARER_TOKEN_BEDROCK`.
    /// The SDK does not retry: the client retries on the status we answer, and retrying
    /// here too would multiply the attempts and delay that answer.
    pub async fn new(config: BedrockConfig) -> Result<Self, BedrockConfigError> {
        let config::Checked {
            region,
            endpoint_url,
            token,
            mapping,
            connect_timeout,
            read_timeout,
            betas,
        } = config.check()?;

        let mut loader =
            aws_config::defaults(BehaviorVersion::latest()).region(Region::new(region.clone()));
        if token.is_some() {
            loader = loader.no_credentials();
        }
        let shared = loader.load().await;

        let mut timeouts = TimeoutConfig::builder().connect_timeout(connect_timeout);
        timeouts = match read_timeout {
            Some(limit) => timeouts.read_timeout(limit),
            None => timeouts.disable_read_timeout(),
        };
        let mut builder = aws_sdk_bedrockruntime::config::Builder::from(&shared)
            .timeout_config(timeouts.build())
            .retry_config(RetryConfig::disabled());
        if let Some(url) = &endpoint_url {
            builder = builder.endpoint_url(url.replace("{region}", &region));
        }
        if let Some(token) = token {
            // Without other credentials, the bearer scheme is the only one that can sign.
            builder = builder.bearer_token(token);
        }
        Ok(Self {
            client: aws_sdk_bedrockruntime::Client::from_conf(builder.build()),
            region,
            endpoint_url,
            mapping: Swap::new(mapping),
            betas,
        })
    }

    /// The AWS region requests go to (unless an account says otherwise).
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The region `account`'s requests go to.
    pub fn region_for<'a>(&'a self, account: &'a Account) -> &'a str {
        account.region.as_deref().unwrap_or(&self.region)
    }

    /// What a call for `account` changes in the client's configuration: the region (and
    /// the endpoint URL, when it names the region), the bearer token (preferred over
    /// SigV4 credentials the chain may also have). `None`: nothing.
    fn config_for(&self, account: &Account) -> Option<aws_sdk_bedrockruntime::config::Builder> {
        if account == &Account::default() {
            return None;
        }
        let mut config = aws_sdk_bedrockruntime::config::Builder::default();
        if let Some(region) = account
            .region
            .as_deref()
            .filter(|region| *region != self.region)
        {
            config = config.region(Region::new(region.to_owned()));
            if let Some(url) = &self.endpoint_url {
                config = config.endpoint_url(url.replace("{region}", region));
            }
        }
        if let Some(key) = &account.api_key {
            use aws_smithy_runtime_api::client::auth::http::HTTP_BEARER_AUTH_SCHEME_ID;
            config = config
                .bearer_token(aws_sdk_bedrockruntime::config::Token::new(
                    key.expose(),
                    None,
                ))
                .auth_scheme_preference([HTTP_BEARER_AUTH_SCHEME_ID]);
        }
        Some(config)
    }

    /// Which Bedrock model serves which requested model, now.
    pub fn mapping(&self) -> Arc<ModelMapping> {
        self.mapping.current()
    }

    /// Takes the mapping from `mapping`, which may change while it runs (see
    /// [`crate::live`]).
    pub fn with_mapping(mut self, mapping: Swap<ModelMapping>) -> Self {
        self.mapping = mapping;
        self
    }

    /// Sends an Anthropic Messages request body to Bedrock and answers like the Anthropic API would.
    ///
    /// A body that is not a JSON object is answered with 400 and not sent. A stream is
    /// answered once its first event (or error) is in: a stream that fails before any
    /// event gets the error's status, like a call refused outright, so the caller can
    /// still choose what to do; a failure later ends the stream with an `error` event.
    pub async fn messages(
        &self,
        body: &Bytes,
        anthropic_beta: Option<&HeaderValue>,
        bedrock_model: &str,
        account: &Account,
    ) -> Response<Body> {
        let config = self.config_for(account);
        match Invocation::from_anthropic(body, anthropic_beta, &self.betas) {
            Ok(Invocation { body, stream: true }) => self.stream(body, bedrock_model, config).await,
            Ok(Invocation {
                body,
                stream: false,
            }) => self.invoke(body, bedrock_model, config).await,
            Err(invalid) => {
                tracing::debug!(bedrock.model = bedrock_model, error = %invalid, "invalid request, not sent to Bedrock");
                fault::error_response(Fault::INVALID_REQUEST, &invalid.to_string())
            }
        }
    }

    async fn invoke(
        &self,
        body: Vec<u8>,
        model: &str,
        config: Option<aws_sdk_bedrockruntime::config::Builder>,
    ) -> Response<Body> {
        let call = self
            .client
            .invoke_model()
            .model_id(model)
            .content_type(JSON)
            .accept(JSON)
            .body(Blob::new(body));
        let sent = match config {
            Some(config) => call.customize().config_override(config).send().await,
            None => call.send().await,
        };
        match sent {
            Ok(output) => {
                tracing::info!(
                    bedrock.model = model,
                    status = 200,
                    streaming = false,
                    bedrock.request_id = output.request_id(),
                    "Bedrock answered"
                );
                respond(StatusCode::OK, JSON, output.body.into_inner())
            }
            Err(error) => Failure::of(&error, ProvideErrorMetadata::code).answer(model),
        }
    }

    async fn stream(
        &self,
        body: Vec<u8>,
        model: &str,
        config: Option<aws_sdk_bedrockruntime::config::Builder>,
    ) -> Response<Body> {
        let call = self
            .client
            .invoke_model_with_response_stream()
            .model_id(model)
            .content_type(JSON)
            .accept(JSON)
            .body(Blob::new(body));
        let sent = match config {
            Some(config) => call.customize().config_override(config).send().await,
            None => call.send().await,
        };
        let (mut events, request_id) = match sent {
            Ok(output) => {
                let request_id = output.request_id().map(str::to_owned);
                (output.body, request_id)
            }
            Err(error) => return Failure::of(&error, ProvideErrorMetadata::code).answer(model),
        };
        let first = match events.recv().await {
            Ok(first) => first,
            Err(error) => return Failure::of(&error, stream_error_code).answer(model),
        };
        tracing::info!(
            bedrock.model = model,
            status = 200,
            streaming = true,
            bedrock.request_id = request_id.as_deref(),
            "Bedrock stream started"
        );
        stream::relayed(events, first, model)
    }
}

/// A response with this status, content type and body.
fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Body>,
) -> Response<Body> {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
