//! A client's Messages request, as the body Bedrock's `InvokeModel` operations take.

use http::HeaderValue;
use serde_json::{Map, Value};

/// The `anthropic_version` Bedrock's Anthropic models take.
const ANTHROPIC_VERSION: &str = "bedrock-2023-05-31";

/// A Messages request ready for Bedrock: the body, and which operation it is for.
#[derive(Debug, PartialEq)]
pub(super) struct Invocation {
    pub(super) body: Vec<u8>,
    pub(super) stream: bool,
}

/// Why a client's request body cannot be sent to Bedrock.
#[derive(Debug, thiserror::Error)]
pub(super) enum InvalidRequest {
    #[error("the request body is not a JSON object: {0}")]
    Json(serde_json::Error),
    #[error("`stream` must be a boolean")]
    Stream,
    #[error("the anthropic-beta header must be visible ASCII")]
    BetaHeader,
    #[error("`anthropic_beta` must be an array")]
    BetaField,
}

impl Invocation {
    /// Every field passes through but `model` and `stream`; `anthropic_version` is
    /// Bedrock's, and the `anthropic-beta` header joins `anthropic_beta`, keeping only
    /// the betas in `allowed` (Bedrock refuses the request for any other).
    pub(super) fn from_anthropic(
        body: &[u8],
        anthropic_beta: Option<&HeaderValue>,
        allowed: &[String],
    ) -> Result<Self, InvalidRequest> {
        let mut fields: Map<String, Value> =
            serde_json::from_slice(body).map_err(InvalidRequest::Json)?;
        // Bedrock takes the model from the URL and streaming from the operation, and
        // refuses both in the body.
        fields.remove("model");
        let stream = match fields.remove("stream") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(stream)) => stream,
            Some(_) => return Err(InvalidRequest::Stream),
        };
        fields.insert("anthropic_version".to_owned(), ANTHROPIC_VERSION.into());
        if let Some(header) = anthropic_beta {
            merge_betas(&mut fields, header)?;
        }
        keep_allowed_betas(&mut fields, allowed)?;
        Ok(Self {
            body: Value::Object(fields).to_string().into_bytes(),
            stream,
        })
    }
}

/// Adds the header's comma-separated betas to the body's `anthropic_beta`, once each.
fn merge_betas(
    fields: &mut Map<String, Value>,
    header: &HeaderValue,
) -> Result<(), InvalidRequest> {
    let header = header.to_str().map_err(|_| InvalidRequest::BetaHeader)?;
    let wanted: Vec<&str> = header
        .split(',')
        .map(str::trim)
        .filter(|beta| !beta.is_empty())
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let Value::Array(betas) = fields
        .entry("anthropic_beta")
        .or_insert_with(|| Value::Array(Vec::new()))
    else {
        return Err(InvalidRequest::BetaField);
    };
    for beta in wanted {
        if !betas.iter().any(|known| known.as_str() == Some(beta)) {
            betas.push(beta.into());
        }
    }
    Ok(())
}

/// Drops the betas Bedrock would refuse; no betas left ⇒ no `anthropic_beta` at all.
fn keep_allowed_betas(
    fields: &mut Map<String, Value>,
    allowed: &[String],
) -> Result<(), InvalidRequest> {
    let Some(betas) = fields.get_mut("anthropic_beta") else {
        return Ok(());
    };
    let Value::Array(betas) = betas else {
        return Err(InvalidRequest::BetaField);
    };
    betas.retain(|beta| {
        let keep = beta
            .as_str()
            .is_some_and(|beta| allowed.iter().any(|a| a == beta));
        if !keep {
            tracing::debug!(%beta, "beta not supported by Bedrock: dropped");
        }
        keep
    });
    if betas.is_empty() {
        fields.remove("anthropic_beta");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn allowed() -> Vec<String> {
        crate::bedrock::BEDROCK_BETAS
            .iter()
            .map(|b| (*b).to_owned())
            .collect()
    }

    fn from_anthropic(
        body: &[u8],
        beta: Option<&HeaderValue>,
    ) -> Result<Invocation, InvalidRequest> {
        Invocation::from_anthropic(body, beta, &allowed())
    }

    fn invocation(body: &Value, beta: Option<&'static str>) -> (Value, bool) {
        let beta = beta.map(HeaderValue::from_static);
        let Invocation { body, stream } =
            from_anthropic(body.to_string().as_bytes(), beta.as_ref()).unwrap();
        (serde_json::from_slice(&body).unwrap(), stream)
    }

    #[test]
    fn the_body_loses_model_and_stream_and_gains_the_bedrock_version() {
        let original = json!({
            "model": "claude-sonnet-4-5-20250929",
            "max_tokens": 1024,
            "temperature": 0.7,
            "stream": true,
            "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
            "messages": [{"role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "ü\u{1F600}"}},
                {"type": "text", "text": "What is this?"}
            ]}],
            "tools": [{"name": "get_weather", "input_schema": {"type": "object", "properties": {}}}],
            "thinking": {"type": "enabled", "budget_tokens": 2048},
            "metadata": {"user_id": "u-1"},
            "a_field_from_the_future": {"nested": [1, 2.5, null, true, 18446744073709551615_u64]}
        });
        let (sent, stream) = invocation(&original, None);
        assert!(stream);
        let mut expected = original.as_object().unwrap().clone();
        expected.remove("model");
        expected.remove("stream");
        expected.insert("anthropic_version".into(), json!("bedrock-2023-05-31"));
        assert_eq!(sent, Value::Object(expected), "every other field unchanged");
    }

    #[test]
    fn stream_absent_false_or_null_is_not_streaming_and_anything_else_is_refused() {
        for stream in [None, Some(json!(false)), Some(Value::Null)] {
            let mut body = json!({"model": "m", "messages": []});
            if let Some(stream) = stream {
                body["stream"] = stream;
            }
            assert!(!invocation(&body, None).1);
        }
        let refused = from_anthropic(br#"{"stream":"yes"}"#, None);
        assert!(matches!(refused, Err(InvalidRequest::Stream)));
    }

    #[test]
    fn the_beta_header_becomes_anthropic_beta_merged_without_duplicates() {
        let header = Some(" interleaved-thinking-2025-05-14 , ,context-1m-2025-08-07,");
        let (sent, _) = invocation(&json!({"messages": []}), header);
        assert_eq!(
            sent["anthropic_beta"],
            json!(["interleaved-thinking-2025-05-14", "context-1m-2025-08-07"])
        );

        let body = json!({"anthropic_beta": ["context-1m-2025-08-07", "token-efficient-tools-2025-02-19"]});
        let (sent, _) = invocation(&body, header);
        assert_eq!(
            sent["anthropic_beta"],
            json!([
                "context-1m-2025-08-07",
                "token-efficient-tools-2025-02-19",
                "interleaved-thinking-2025-05-14"
            ])
        );

        let (sent, _) = invocation(&json!({"messages": []}), Some(" , "));
        assert_eq!(sent.get("anthropic_beta"), None, "no betas, no field");
        let (sent, _) = invocation(&body, None);
        assert_eq!(
            sent["anthropic_beta"], body["anthropic_beta"],
            "kept as sent"
        );
    }

    #[test]
    fn betas_bedrock_refuses_are_dropped() {
        // What Claude Code sends: Bedrock answers "invalid beta flag" to the first two.
        let header = Some("claude-code-20250219,oauth-2025-04-20,interleaved-thinking-2025-05-14");
        let body = json!({"anthropic_beta": ["mcp-servers-2025-12-04"], "messages": []});
        let (sent, _) = invocation(&body, header);
        assert_eq!(
            sent["anthropic_beta"],
            json!(["interleaved-thinking-2025-05-14"])
        );
        let (sent, _) = invocation(&json!({"messages": []}), Some("claude-code-20250219"));
        assert_eq!(sent.get("anthropic_beta"), None, "none left, no field");
    }

    #[test]
    fn invalid_bodies_and_betas_are_refused() {
        for body in [&b"{"[..], b"[]", b"\"text\"", b""] {
            let refused = from_anthropic(body, None);
            assert!(matches!(refused, Err(InvalidRequest::Json(_))), "{body:?}");
        }
        let beta = HeaderValue::from_static("a-beta");
        let refused = from_anthropic(br#"{"anthropic_beta":"a"}"#, Some(&beta));
        assert!(matches!(refused, Err(InvalidRequest::BetaField)));
        let beta = HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap();
        let refused = from_anthropic(b"{}", Some(&beta));
        assert!(matches!(refused, Err(InvalidRequest::BetaHeader)));
    }
}
