//! Model ids, reduced to the key prices are listed under.

/// Bedrock's cross-region inference-profile prefixes (`us.anthropic.…`).
const CROSS_REGION_PREFIXES: [&str; 8] = [
    "global.", "us.", "us-gov.", "eu.", "apac.", "jp.", "au.", "ca.",
];

/// Bedrock's provider prefix (`anthropic.claude-…`).
const PROVIDER_PREFIX: &str = "anthropic.";

/// Reduces a model id — Anthropic's, Bedrock's or an alias — to its price key.
///
/// Lowercases and trims; strips a cross-region prefix (`global.`, `us.`, `eu.`, `apac.`, …),
/// `anthropic.`, a version suffix (`-v1:0`, `-v2`), `-latest` and a `-YYYYMMDD` date; and
/// writes a version's dot as a dash (`4.5` → `4-5`). Nothing else: the key is matched
/// exactly, so an id this does not recognise stays unknown.
///
/// ```
/// use usage_layer::pricing::normalize_model_id;
///
/// assert_eq!(normalize_model_id("us.anthropic.claude-sonnet-4-5-20250929-v1:0"), "claude-sonnet-4-5");
/// assert_eq!(normalize_model_id("claude-3-opus-latest"), "claude-3-opus");
/// assert_eq!(normalize_model_id("Claude-Sonnet-4.5"), "claude-sonnet-4-5");
/// ```
pub fn normalize_model_id(id: &str) -> String {
    let id = id.trim().to_lowercase();
    let id = CROSS_REGION_PREFIXES
        .iter()
        .find_map(|prefix| id.strip_prefix(prefix))
        .unwrap_or(&id);
    let id = id.strip_prefix(PROVIDER_PREFIX).unwrap_or(id);
    let id = strip_version(id);
    let id = id.strip_suffix("-latest").unwrap_or(id);
    let id = strip_date(id);
    dash_version_dots(id)
}

/// Strips Bedrock's `-v<digits>` suffix with its optional `:<digits>` revision.
fn strip_version(id: &str) -> &str {
    let unrevised = match id.rsplit_once(':') {
        Some((head, revision)) if is_digits(revision) => head,
        _ => id,
    };
    match unrevised.rsplit_once("-v") {
        Some((head, version)) if is_digits(version) => head,
        // A revision without a version is not Bedrock's suffix: keep the id whole.
        _ => id,
    }
}

/// Strips a `-YYYYMMDD` snapshot date.
fn strip_date(id: &str) -> &str {
    match id.rsplit_once('-') {
        Some((head, date)) if date.len() == 8 && is_digits(date) => head,
        _ => id,
    }
}

/// The alias of an OpenAI dated snapshot key (`gpt-4o-2024-08-06` → `gpt-4o`): a
/// `-YYYY-MM-DD` suffix stripped; `None` when the key has none.
///
/// A snapshot may be priced apart from its alias (`gpt-4o-2024-05-13` is), so the catalog
/// tries the whole key first and this alias only when the whole key has no price.
pub(super) fn dated_alias(key: &str) -> Option<&str> {
    // Any text can be a model's name: the cut must fall between characters.
    let (head, date) = key.split_at_checked(key.len().checked_sub(11)?)?;
    let date = date.strip_prefix('-')?.as_bytes();
    let shape = date.len() == 10
        && date[4] == b'-'
        && date[7] == b'-'
        && [&date[..4], &date[5..7], &date[8..]]
            .iter()
            .all(|part| part.iter().all(u8::is_ascii_digit));
    (shape && !head.is_empty()).then_some(head)
}

/// Writes each dot between two digits as a dash (`claude-sonnet-4.5` → `claude-sonnet-4-5`).
fn dash_version_dots(id: &str) -> String {
    let bytes = id.as_bytes();
    let digit_at = |index: usize| bytes.get(index).is_some_and(u8::is_ascii_digit);
    id.char_indices()
        .map(|(index, c)| {
            if c == '.' && index > 0 && digit_at(index - 1) && digit_at(index + 1) {
                '-'
            } else {
                c
            }
        })
        .collect()
}

fn is_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dated_aliases_strip_only_a_dashed_date() {
        assert_eq!(dated_alias("gpt-4o-2024-08-06"), Some("gpt-4o"));
        assert_eq!(dated_alias("gpt-4-1-mini-2025-04-14"), Some("gpt-4-1-mini"));
        assert_eq!(dated_alias("o3-2025-04-16"), Some("o3"));
        assert_eq!(dated_alias("gpt-4o"), None);
        assert_eq!(dated_alias("-2024-08-06"), None);
        assert_eq!(dated_alias("gpt-4-1106-preview"), None);
        assert_eq!(dated_alias("gpt-4o-2024-0806"), None);
        // The cut 11 bytes from the end falls inside a character: no alias, no panic.
        assert_eq!(dated_alias("é中é中é中é中"), None);
        assert_eq!(dated_alias("模型-2024-08-06"), Some("模型"));
        assert_eq!(
            normalize_model_id("GPT-4.1-2025-04-14"),
            "gpt-4-1-2025-04-14"
        );
    }

    #[test]
    fn normalises_the_documented_examples() {
        for (id, key) in [
            (
                "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
                "claude-sonnet-4-5",
            ),
            (
                "global.anthropic.claude-opus-4-5-20251101-v1:0",
                "claude-opus-4-5",
            ),
            ("claude-3-opus-latest", "claude-3-opus"),
            ("Claude-Sonnet-4.5", "claude-sonnet-4-5"),
            ("anthropic.claude-3-haiku-20240307-v1:0", "claude-3-haiku"),
        ] {
            assert_eq!(normalize_model_id(id), key, "{id}");
        }
    }

    #[test]
    fn normalises_every_prefix_and_suffix_form() {
        for (id, key) in [
            ("  CLAUDE-HAIKU-4-5  ", "claude-haiku-4-5"),
            (
                "eu.anthropic.claude-3-7-sonnet-20250219-v1:0",
                "claude-3-7-sonnet",
            ),
            (
                "apac.anthropic.claude-3-5-sonnet-20241022-v2:0",
                "claude-3-5-sonnet",
            ),
            (
                "jp.anthropic.claude-haiku-4-5-20251001-v1:0",
                "claude-haiku-4-5",
            ),
            ("anthropic.claude-opus-4-1-20250805-v1", "claude-opus-4-1"),
            ("claude-sonnet-4-20250514", "claude-sonnet-4"),
            ("claude-3.5-haiku-latest", "claude-3-5-haiku"),
            ("claude-opus-4-5", "claude-opus-4-5"),
        ] {
            assert_eq!(normalize_model_id(id), key, "{id}");
        }
    }

    #[test]
    fn leaves_what_is_not_a_known_affix() {
        for id in [
            // Not 8 digits: not a date.
            "claude-x-2025",
            // A revision with no version is not Bedrock's suffix.
            "claude-x:0",
            // `-v` without digits is part of the name.
            "claude-v",
            // A dot not between two digits.
            "claude.x",
            // Prefixes only count at the start.
            "claude-us.anthropic.x",
            "",
        ] {
            assert_eq!(normalize_model_id(id), id, "{id:?}");
        }
    }

    #[test]
    fn is_idempotent_on_keys() {
        let key = normalize_model_id("us.anthropic.claude-sonnet-4-5-20250929-v1:0");
        assert_eq!(normalize_model_id(&key), key);
    }
}
