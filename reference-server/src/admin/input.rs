//! Reading admin requests: ids, names, amounts of money, flags.
//!
//! Money is integer micro-USD in the database and a decimal string with 6 places in
//! responses. A request may give an amount as a string or a number (`"50"`, `"50.5"`,
//! `50`), ≥ 0 with at most 6 decimals; `null` is unlimited. A string is exact at any size;
//! a JSON number is parsed by serde_json as a double first, so it is exact only up to about
//! 15 significant digits — send a string for more.

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};
use uuid::Uuid;

use super::AdminError;

/// The longest user or key name, in characters.
pub(super) const MAX_NAME_CHARS: usize = 200;

/// The longest description, in characters.
pub(super) const MAX_DESCRIPTION_CHARS: usize = 2000;

/// The OpenAPI schema of an amount of USD in a request: a decimal string or a JSON number,
/// at least 0, at most 6 decimal places.
pub(super) struct UsdInput;

impl PartialSchema for UsdInput {
    fn schema() -> RefOr<Schema> {
        utoipa::openapi::schema::OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(r"^[0-9]+(\.[0-9]{1,6})?$")),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Number)
                    .minimum(Some(0)),
            )
            .description(Some(
                "USD: a decimal string or a number, at least 0, at most 6 decimal places",
            ))
            .into()
    }
}

impl ToSchema for UsdInput {}

/// A field that may be absent (`None`, with `#[serde(default)]`) but, when present, is a
/// `T`: `null` is refused unless `T` takes it (a budget's `Value::Null` is "unlimited").
pub(super) fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

pub(super) fn parse_id(parameter: &'static str, text: &str) -> Result<Uuid, AdminError> {
    Uuid::parse_str(text.trim()).map_err(|_| AdminError::bad(parameter, "must be a UUID"))
}

/// A user or key name, without surrounding spaces.
pub(super) fn parse_name(name: &str) -> Result<String, AdminError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(AdminError::bad("name", "must not be empty"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(AdminError::bad(
            "name",
            format!("must be at most {MAX_NAME_CHARS} characters"),
        ));
    }
    // Postgres text cannot hold NUL; other control characters only break logs and lists.
    if name.chars().any(char::is_control) {
        return Err(AdminError::bad(
            "name",
            "must not contain control characters (NUL, line breaks, …)",
        ));
    }
    Ok(name.to_owned())
}

/// A description without surrounding spaces; empty is none. Line breaks and tabs are
/// fine here, other control characters (NUL first) are not.
/// `None` (absent or `null`) is none as well.
pub(super) fn parse_description(text: Option<&str>) -> Result<Option<String>, AdminError> {
    let text = text.unwrap_or_default().trim();
    if text.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(AdminError::bad(
            "description",
            format!("must be at most {MAX_DESCRIPTION_CHARS} characters"),
        ));
    }
    if text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(AdminError::bad(
            "description",
            "must not contain control characters other than line breaks and tabs",
        ));
    }
    Ok((!text.is_empty()).then(|| text.to_owned()))
}

/// An amount of USD in micro-USD; `null` is `None` (unlimited).
///
/// A JSON number is read from its text (`50.5`, or `1e-7` in exponent form), so no float
/// rounding enters; trailing zeros beyond 6 decimals are harmless (`"1.0000000"`).
pub(super) fn parse_usd(parameter: &'static str, value: &Value) -> Result<Option<i64>, AdminError> {
    let amount = match value {
        Value::Null => return Ok(None),
        Value::String(text) => Decimal::from_str_exact(text),
        Value::Number(number) => {
            let text = number.to_string();
            if text.contains(['e', 'E']) {
                Decimal::from_scientific(&text)
            } else {
                Decimal::from_str_exact(&text)
            }
        }
        _ => {
            return Err(AdminError::bad(
                parameter,
                "must be an amount in USD (a decimal string or number) or null",
            ));
        }
    }
    .map_err(|_| AdminError::bad(parameter, "not a decimal amount in USD"))?;
    if amount.is_sign_negative() && !amount.is_zero() {
        return Err(AdminError::bad(parameter, "must not be negative"));
    }
    if amount.normalize().scale() > 6 {
        return Err(AdminError::bad(parameter, "at most 6 decimal places"));
    }
    amount
        .checked_mul(Decimal::from(1_000_000))
        .and_then(|micros| micros.to_i64())
        .map(Some)
        .ok_or_else(|| AdminError::bad(parameter, "too large"))
}

pub(super) fn parse_flag(parameter: &'static str, value: Option<&str>) -> Result<bool, AdminError> {
    match value.map(str::trim) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(AdminError::bad(parameter, "must be true or false")),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn micros(value: Value) -> Result<Option<i64>, String> {
        parse_usd("monthly_budget_usd", &value).map_err(|error| match error {
            AdminError::BadRequest { parameter, message } => format!("{parameter}: {message}"),
            other => panic!("{other:?}"),
        })
    }

    #[test]
    fn amounts_are_read_exactly_from_strings_and_numbers() {
        assert_eq!(micros(json!("50")), Ok(Some(50_000_000)));
        assert_eq!(micros(json!("50.5")), Ok(Some(50_500_000)));
        assert_eq!(micros(json!(50)), Ok(Some(50_000_000)));
        assert_eq!(micros(json!(50.5)), Ok(Some(50_500_000)));
        assert_eq!(micros(json!(0.000001)), Ok(Some(1)));
        assert_eq!(micros(json!("0.1234560")), Ok(Some(123_456)));
        assert_eq!(micros(json!("0")), Ok(Some(0)));
        assert_eq!(micros(json!("-0")), Ok(Some(0)));
        assert_eq!(micros(json!(null)), Ok(None));
        // A float would make this 19999999.999999998.
        assert_eq!(
            micros(json!("19999999.999999")),
            Ok(Some(19_999_999_999_999))
        );
    }

    #[test]
    fn bad_amounts_name_the_parameter() {
        for (value, message) in [
            (json!("-1"), "must not be negative"),
            (json!(-0.5), "must not be negative"),
            (json!("0.0000001"), "at most 6 decimal places"),
            (json!(0.0000001), "at most 6 decimal places"),
            (json!("fifty"), "not a decimal amount in USD"),
            (json!(""), "not a decimal amount in USD"),
            (json!(true), "must be an amount in USD"),
            (json!({"usd": 1}), "must be an amount in USD"),
            (json!("100000000000000"), "too large"),
            (json!(1e300), "not a decimal amount in USD"),
        ] {
            let error = micros(value.clone()).unwrap_err();
            assert!(
                error.starts_with("monthly_budget_usd: ") && error.contains(message),
                "{value}: {error}"
            );
        }
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(parse_name("  Ada ").unwrap(), "Ada");
        assert!(parse_name("   ").is_err());
        assert!(parse_name(&"é".repeat(MAX_NAME_CHARS)).is_ok());
        assert!(parse_name(&"é".repeat(MAX_NAME_CHARS + 1)).is_err());
    }
}
