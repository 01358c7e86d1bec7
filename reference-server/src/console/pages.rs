//! The console's pages. Each reads the admin API (see [`Page::get`]) and renders it; the
//! forms send their changes to the admin API from the browser (`console.js`).

use std::collections::BTreeMap;

use axum::extract::{Path, Query};
use axum::response::Response;
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use maud::{Markup, html};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::Value;

use super::charts::{self, Line};
use super::{Page, PageError, count, svg};

/// The providers, in the order they are shown.
const PROVIDERS: [(&str, &str); 2] = [("plan", "Plan"), ("bedrock", "Bedrock")];

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn int(value: &Value, key: &str) -> i64 {
    value.get(key).and_then(Value::as_i64).unwrap_or_default()
}

/// A decimal string of the API (`"12.345678"`), exactly.
fn dec(value: &Value, key: &str) -> Decimal {
    text(value, key).parse().unwrap_or_default()
}

fn list<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    value
        .get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn to_f64(value: Decimal) -> f64 {
    use rust_decimal::prelude::ToPrimitive;
    value.to_f64().unwrap_or_default()
}

/// Dollars as the API gives them, with a `$` (6 places: exactly what was recorded).
fn dollars(amount: Decimal) -> String {
    format!("${amount}")
}

fn ratio(part: Decimal, whole: Decimal) -> String {
    if whole.is_zero() {
        "—".to_owned()
    } else {
        format!("{:.1}%", to_f64(part / whole * Decimal::from(100)))
    }
}

/// The query string of `pairs`, empty values left out.
fn query(pairs: &[(&str, &str)]) -> String {
    let mut serializer = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in pairs {
        if !value.is_empty() {
            serializer.append_pair(key, value);
        }
    }
    serializer.finish()
}

fn when(page: &Page, at: &str) -> String {
    DateTime::parse_from_rfc3339(at).map_or_else(
        |_| at.to_owned(),
        |at| {
            at.with_timezone(&page.state.queries.buckets().zone())
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        },
    )
}

/// The dashboard's and user page's range: a preset or custom dates, and the bucket
/// that suits it.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RangeParams {
    /// `day`, `week`, `month` or `custom`.
    range: Option<String>,
    start_date: Option<String>,
    end_date: Option<String>,
    user_id: Option<String>,
    /// `both` (default), `plan` or `bedrock`.
    provider: Option<String>,
    /// `period` (default) or `cumulative`.
    view: Option<String>,
    /// One chart, large.
    expand: Option<String>,
}

impl RangeParams {
    fn preset(&self, default: &'static str) -> &str {
        match self.range.as_deref() {
            Some(range @ ("day" | "week" | "month" | "custom")) => range,
            _ => default,
        }
    }

    /// The usage API's range parameters, and the bucket picked for it.
    fn api(&self, default: &'static str) -> Result<(String, &'static str), PageError> {
        let preset = self.preset(default);
        let bucket = match preset {
            "day" => "hour",
            "week" | "month" => "day",
            _ => {
                let parse = |name: &str, value: Option<&str>| {
                    value
                        .and_then(|value| NaiveDate::parse_from_str(value, "%Y-%m-%d").ok())
                        .ok_or_else(|| PageError {
                            status: http::StatusCode::BAD_REQUEST,
                            detail: format!("{name}: pick a date (YYYY-MM-DD)"),
                        })
                };
                let start = parse("start_date", self.start_date.as_deref())?;
                let end = parse("end_date", self.end_date.as_deref())?;
                let days = (end - start).num_days();
                let bucket = match days {
                    ..=2 => "hour",
                    3..=120 => "day",
                    121..=730 => "week",
                    _ => "month",
                };
                return Ok((
                    query(&[
                        ("start_date", &start.to_string()),
                        ("end_date", &end.to_string()),
                        ("bucket_type", bucket),
                    ]),
                    bucket,
                ));
            }
        };
        Ok((
            query(&[("period", preset), ("bucket_type", bucket)]),
            bucket,
        ))
    }

    fn providers(&self) -> Vec<(&'static str, &'static str)> {
        PROVIDERS
            .into_iter()
            .filter(|(id, _)| match self.provider.as_deref() {
                Some(only @ ("plan" | "bedrock")) => only == *id,
                _ => true,
            })
            .collect()
    }

    fn cumulative(&self) -> bool {
        self.view.as_deref() == Some("cumulative")
    }

    /// These parameters with some replaced, as a link.
    fn link(&self, base: &str, replace: &[(&str, &str)]) -> String {
        let current = [
            ("range", self.range.as_deref().unwrap_or_default()),
            ("start_date", self.start_date.as_deref().unwrap_or_default()),
            ("end_date", self.end_date.as_deref().unwrap_or_default()),
            ("user_id", self.user_id.as_deref().unwrap_or_default()),
            ("provider", self.provider.as_deref().unwrap_or_default()),
            ("view", self.view.as_deref().unwrap_or_default()),
        ];
        let pairs: Vec<(&str, &str)> = current
            .iter()
            .map(|(key, value)| {
                replace
                    .iter()
                    .find(|(k, _)| k == key)
                    .map_or((*key, *value), |(k, v)| (*k, *v))
            })
            .collect();
        format!("{base}?{}", query(&pairs))
    }
}

/// A bucket's label in the usage time zone.
fn bucket_label(page: &Page, start: &str, bucket: &str) -> String {
    let zone = page.state.queries.buckets().zone();
    DateTime::parse_from_rfc3339(start).map_or_else(
        |_| start.to_owned(),
        |at| {
            let at = at.with_timezone(&zone);
            match bucket {
                "hour" | "minute" => at.format("%m-%d %H:%M"),
                "month" => at.format("%Y-%m"),
                _ => at.format("%m-%d"),
            }
            .to_string()
        },
    )
}

/// The range presets, dates, user and provider pickers.
fn range_form(params: &RangeParams, default: &'static str, users: Option<&[Value]>) -> Markup {
    let preset = params.preset(default);
    let provider = params.provider.as_deref().unwrap_or("both");
    html! {
        form class="filters" method="get" {
            fieldset {
                legend { "Range" }
                @for (value, label) in [("day", "Today"), ("week", "This week"), ("month", "This month"), ("custom", "Dates")] {
                    label class="choice" {
                        input type="radio" name="range" value=(value) checked[preset == value];
                        (label)
                    }
                }
                label for="f-start" { "From" } input id="f-start" type="date" name="start_date" value=[params.start_date.as_deref()];
                label for="f-end" { "to" } input id="f-end" type="date" name="end_date" value=[params.end_date.as_deref()];
            }
            @if let Some(users) = users {
                label for="f-user" { "User" }
                select id="f-user" name="user_id" {
                        option value="" { "All users" }
                        @for user in users {
                            option value=(text(user, "id")) selected[params.user_id.as_deref() == Some(text(user, "id"))] { (text(user, "name")) }
                        }
                }
                label for="f-provider" { "Provider" }
                select id="f-provider" name="provider" {
                        @for (value, label) in [("both", "Plan and Bedrock"), ("plan", "Plan"), ("bedrock", "Bedrock")] {
                            option value=(value) selected[provider == value] { (label) }
                        }
                }
                label for="f-view" { "Charts" }
                select id="f-view" name="view" {
                        option value="period" selected[!params.cumulative()] { "Per bucket" }
                        option value="cumulative" selected[params.cumulative()] { "Cumulative" }
                }
            }
            button type="submit" { "Show" }
        }
    }
}

/// What one provider did in the range, from the usage API.
struct ProviderUsage {
    id: &'static str,
    name: &'static str,
    usage: Value,
    top: Value,
    series: Value,
}

impl ProviderUsage {
    fn cost(&self) -> Decimal {
        dec(&self.usage, "estimated_cost_usd")
    }

    /// A cost component of the range (`input_cost_usd`, …), as the API sums it.
    fn component(&self, key: &str) -> Decimal {
        dec(&self.usage, key)
    }
}

fn card(metric: &str, label: &str, value: String, note: Option<String>) -> Markup {
    html! {
        div class="card" {
            div class="label" { (label) }
            div class="value" data-metric=(metric) { (value) }
            @if let Some(note) = note { div class="note" { (note) } }
        }
    }
}

fn cards(usage: &ProviderUsage) -> Markup {
    let u = &usage.usage;
    let requests = int(u, "total_requests");
    let tokens = int(u, "total_tokens");
    let cost = usage.cost();
    let cache_cost =
        usage.component("cache_write_cost_usd") + usage.component("cache_read_cost_usd");
    let users: Vec<&Value> = list(&usage.top, "users")
        .iter()
        .filter(|user| int(user, "total_requests") > 0)
        .collect();
    let top_share = users.first().map_or_else(
        || "—".to_owned(),
        |top| {
            if cost.is_zero() {
                ratio(
                    Decimal::from(int(top, "total_tokens")),
                    Decimal::from(tokens),
                )
            } else {
                ratio(dec(top, "estimated_cost_usd"), cost)
            }
        },
    );
    let per = |value: Decimal, places: u32| {
        (requests != 0).then(|| (value / Decimal::from(requests)).round_dp(places))
    };
    let p = usage.id;
    html! {
        section class="provider" aria-labelledby=(format!("{p}-heading")) {
            h2 id=(format!("{p}-heading")) { (usage.name) }
            div class="cards" {
                (card(&format!("{p}.cost"), "Estimated cost", dollars(cost), Some(format!("cache {}", ratio(cache_cost, cost)))))
                (card(&format!("{p}.requests"), "Requests", count(requests), None))
                (card(&format!("{p}.total_tokens"), "Tokens (input + output)", count(tokens), None))
                (card(&format!("{p}.input_tokens"), "Input tokens", count(int(u, "total_input_tokens")), None))
                (card(&format!("{p}.output_tokens"), "Output tokens", count(int(u, "total_output_tokens")), None))
                (card(&format!("{p}.cache_read_tokens"), "Cache read tokens", count(int(u, "total_cache_read_tokens")), None))
                (card(&format!("{p}.cache_write_tokens"), "Cache write tokens", count(int(u, "total_cache_write_tokens")), None))
                (card(&format!("{p}.tokens_per_request"), "Tokens per request", per(Decimal::from(tokens), 0).map_or_else(|| "—".to_owned(), |n| count(rust_decimal::prelude::ToPrimitive::to_i64(&n).unwrap_or_default())), None))
                (card(&format!("{p}.cost_per_request"), "Cost per request", per(cost, 6).map_or_else(|| "—".to_owned(), dollars), None))
                (card(&format!("{p}.active_users"), "Active users", count(users.len() as i64), None))
                (card(&format!("{p}.top_user_share"), "Top user's share", top_share, None))
            }
            table class="components" {
                caption { "Cost by component" }
                thead { tr { th scope="col" { "Input" } th scope="col" { "Output" } th scope="col" { "Cache write" } th scope="col" { "Cache read" } } }
                tbody { tr {
                    @for key in ["input_cost_usd", "output_cost_usd", "cache_write_cost_usd", "cache_read_cost_usd"] {
                        td data-metric=(format!("{p}.{key}")) { (dollars(usage.component(key))) }
                    }
                } }
            }
        }
    }
}

fn figure(params: &RangeParams, name: &str, title: &str, chart: String) -> Markup {
    let expanded = params.expand.as_deref() == Some(name);
    html! {
        figure class=(if expanded { "chart expanded" } else { "chart" }) id=(format!("chart-{name}")) {
            (svg(chart))
            figcaption {
                (title) " · "
                @if expanded {
                    a href=(params.link("/console/", &[])) { "Back" }
                } @else {
                    a href=(format!("{}&expand={name}", params.link("/console/", &[]))) aria-label=(format!("Expand {title}")) { "Expand" }
                }
            }
        }
    }
}

/// `/console/`: usage of both providers side by side, how requests ended, the writer.
pub(crate) async fn dashboard(
    page: Page,
    Query(params): Query<RangeParams>,
) -> Result<Response, PageError> {
    let (range, bucket) = params.api("week")?;
    let user = params.user_id.as_deref().unwrap_or_default();
    let with = |provider: &str, rest: &[(&str, &str)]| {
        let mut pairs = vec![("provider", provider), ("user_id", user)];
        pairs.extend_from_slice(rest);
        format!("{range}&{}", query(&pairs))
    };
    let users = page.get::<Value>("/admin/users").await?;
    let mut shown = Vec::new();
    for (id, name) in params.providers() {
        shown.push(ProviderUsage {
            id,
            name,
            usage: page.get(&format!("/admin/usage?{}", with(id, &[]))).await?,
            top: page
                .get(&format!(
                    "/admin/usage/top-users?{}",
                    with(id, &[("limit", "1000")])
                ))
                .await?,
            series: page
                .get(&format!(
                    "/admin/usage/top-users/series?{}",
                    with(id, &[("limit", "5")])
                ))
                .await?,
        });
    }
    let outcomes: Value = page
        .get(&format!(
            "/admin/usage/outcomes?{range}&{}",
            query(&[("user_id", user)])
        ))
        .await?;
    let health: Value = page.get("/health").await?;

    let x: Vec<String> = shown.first().map_or_else(Vec::new, |first| {
        list(&first.usage, "buckets")
            .iter()
            .map(|b| bucket_label(&page, text(b, "bucket_start"), bucket))
            .collect()
    });
    let shaped = |line: Line| {
        if params.cumulative() {
            line.cumulative()
        } else {
            line
        }
    };
    // One series of `key` (a bucket field) per provider shown.
    let series = |key: &str, suffix: &str| -> Vec<Line> {
        shown
            .iter()
            .map(|usage| {
                let line = Line::new(
                    format!("{} {suffix}", usage.name),
                    bucket_values(&usage.usage, key),
                );
                shaped(line)
            })
            .collect()
    };
    let theme = page.theme;
    let mut figures: Vec<(String, String, String)> = vec![
        (
            "tokens".into(),
            "Tokens over time".into(),
            charts::lines(
                theme,
                "Tokens (input + output)",
                x.clone(),
                &series("total_tokens", "tokens"),
                "",
            ),
        ),
        (
            "cost".into(),
            "Cost over time".into(),
            money_lines(
                theme,
                "Estimated cost",
                x.clone(),
                series("estimated_cost_usd", "cost"),
            ),
        ),
        (
            "requests".into(),
            "Requests per bucket".into(),
            charts::bars(
                theme,
                "Requests",
                x.clone(),
                &series("total_requests", "requests"),
            ),
        ),
    ];
    for usage in &shown {
        let (id, name) = (usage.id, usage.name);
        // Cost burn: the total and its four components, per bucket.
        let burn = [
            ("estimated_cost_usd", "total"),
            ("input_cost_usd", "input"),
            ("output_cost_usd", "output"),
            ("cache_write_cost_usd", "cache write"),
            ("cache_read_cost_usd", "cache read"),
        ]
        .into_iter()
        .map(|(key, part)| shaped(Line::new(part, bucket_values(&usage.usage, key))))
        .collect();
        figures.push((
            format!("{id}-cost-burn"),
            format!("{name} cost burn by component"),
            money_lines(theme, &format!("{name} cost burn"), x.clone(), burn),
        ));
        let models = list(&usage.usage, "cost_breakdown");
        let labels = models
            .iter()
            .map(|m| {
                m.get("pricing_model_id")
                    .and_then(Value::as_str)
                    .unwrap_or("unpriced")
                    .to_owned()
            })
            .collect();
        let costs = Line::new(
            "cost",
            models
                .iter()
                .map(|m| to_f64(dec(m, "total_cost_usd")))
                .collect(),
        );
        let (unit, factor) = charts::money_unit(charts::max(std::slice::from_ref(&costs)));
        figures.push((
            format!("{id}-models"),
            format!("{name} model mix by cost"),
            charts::ranking(
                theme,
                &format!("{name} model mix ({unit})"),
                labels,
                &costs.scaled(factor),
            ),
        ));
        let top_lines: Vec<Line> = list(&usage.series, "series")
            .iter()
            .map(|u| {
                let user = u.get("name").and_then(Value::as_str).unwrap_or("(no user)");
                shaped(Line::new(user, bucket_values(u, "total_tokens")))
            })
            .collect();
        figures.push((
            format!("{id}-top-users"),
            format!("{name} top users' tokens"),
            charts::lines(
                theme,
                &format!("{name} top users: tokens"),
                x.clone(),
                &top_lines,
                "",
            ),
        ));
    }
    if let Some(name) = params.expand.as_deref() {
        figures.retain(|(id, ..)| id == name);
    }

    let body = html! {
        (range_form(&params, "week", Some(list(&users, "users"))))
        p class="range" {
            "From " strong { (when(&page, text(&shown.first().map_or(Value::Null, |u| u.usage.clone()), "start"))) }
            " to " strong { (when(&page, text(&shown.first().map_or(Value::Null, |u| u.usage.clone()), "end"))) }
            " (" (bucket) " buckets)"
        }
        @if params.expand.is_none() {
            div class="providers" {
                @for usage in &shown { (cards(usage)) }
            }
        }
        div class="charts" {
            @for (name, title, chart) in figures {
                (figure(&params, &name, &title, chart))
            }
        }
        @if params.expand.is_none() {
            (outcomes_section(&outcomes))
            (writer_section(&health))
            div class="providers" {
                @for usage in &shown { (top_users_table(usage)) }
            }
        }
    };
    Ok(page.render("/console/", "Dashboard", body))
}

/// Money over time, in a unit that suits the amounts.
fn money_lines(theme: super::Theme, title: &str, x: Vec<String>, lines: Vec<Line>) -> String {
    let (unit, factor) = charts::money_unit(charts::max(&lines));
    let lines: Vec<Line> = lines.into_iter().map(|line| line.scaled(factor)).collect();
    charts::lines(theme, &format!("{title} ({unit})"), x, &lines, "")
}

/// A bucket field of every bucket of a usage answer: token counts as they are, money
/// (decimal strings) in USD.
fn bucket_values(usage: &Value, key: &str) -> Vec<f64> {
    list(usage, "buckets")
        .iter()
        .map(|bucket| match bucket.get(key) {
            Some(Value::String(amount)) => {
                amount.parse::<Decimal>().map(to_f64).unwrap_or_default()
            }
            Some(value) => value.as_f64().unwrap_or_default(),
            None => 0.0,
        })
        .collect()
}

fn outcomes_section(outcomes: &Value) -> Markup {
    let by_provider = outcomes
        .get("requests_by_provider")
        .cloned()
        .unwrap_or(Value::Null);
    let total: i64 = PROVIDERS.iter().map(|(id, _)| int(&by_provider, id)).sum();
    let fallbacks: i64 = list(outcomes, "fallbacks")
        .iter()
        .map(|f| int(f, "requests"))
        .sum();
    let unpriced = list(outcomes, "unpriced_models");
    html! {
        section class="outcomes" aria-labelledby="outcomes-heading" {
            h2 id="outcomes-heading" { "How requests ended" }
            @if !unpriced.is_empty() {
                div class="warning" role="alert" {
                    strong { "Models without a price: " }
                    "their requests are recorded at $0 until a price is set. "
                    @for model in unpriced {
                        a href=(format!("/console/prices?{}", query(&[("provider", text(model, "provider")), ("model", text(model, "model"))]))) {
                            (text(model, "model")) " (" (text(model, "provider")) ", " (count(int(model, "requests"))) " requests)"
                        }
                        " "
                    }
                }
            }
            div class="cards" {
                (card("fallback.rate", "Fallback rate", ratio(Decimal::from(fallbacks), Decimal::from(total)), Some(format!("{} of {} requests", count(fallbacks), count(total)))))
            }
            div class="tables" {
                table {
                    caption { "Outcomes" }
                    thead { tr { th scope="col" { "Provider" } th scope="col" { "Outcome" } th scope="col" { "Requests" } } }
                    tbody {
                        @for row in list(outcomes, "outcomes") {
                            tr { td { (text(row, "provider")) } td { (text(row, "outcome")) } td class="num" data-metric=(format!("outcome.{}.{}", text(row, "provider"), text(row, "outcome"))) { (count(int(row, "requests"))) } }
                        }
                    }
                }
                table {
                    caption { "Fallbacks and their reasons" }
                    thead { tr { th scope="col" { "Served by" } th scope="col" { "Tried first" } th scope="col" { "Reason" } th scope="col" { "Requests" } } }
                    tbody {
                        @for row in list(outcomes, "fallbacks") {
                            tr { td { (text(row, "provider")) } td { (text(row, "from")) } td { (text(row, "reason")) } td class="num" { (count(int(row, "requests"))) } }
                        }
                    }
                }
            }
        }
    }
}

fn writer_section(health: &Value) -> Markup {
    let usage = health.get("usage").cloned().unwrap_or(Value::Null);
    let number = |key: &str| {
        usage.get(key).map_or_else(
            || "—".to_owned(),
            |v| v.as_i64().map_or_else(|| v.to_string(), count),
        )
    };
    html! {
        section class="writer" aria-labelledby="writer-heading" {
            h2 id="writer-heading" { "Usage writer" }
            p { "Status: " strong data-metric="health.status" { (text(health, "status")) }
                @for reason in list(health, "reasons") { " · " span class="reason" { (reason.as_str().unwrap_or_default()) } }
            }
            div class="cards" {
                (card("writer.queue_depth", "Waiting in memory", number("queue_depth"), None))
                (card("writer.spooled", "Spooled to disk", number("spooled"), Some(format!("{} bytes", number("spool_bytes")))))
                (card("writer.oldest", "Oldest unwritten", usage.get("oldest_unwritten_age_secs").and_then(Value::as_i64).map_or_else(|| "none".to_owned(), |s| format!("{s} s")), None))
                (card("writer.written", "Written", number("written"), None))
                (card("writer.lost", "Lost", number("lost"), None))
            }
        }
    }
}

fn top_users_table(usage: &ProviderUsage) -> Markup {
    let cost = usage.cost();
    html! {
        section class="provider" {
            table {
                caption { (usage.name) ": top users" }
                thead { tr {
                    th scope="col" { "#" } th scope="col" { "User" } th scope="col" { "Requests" }
                    th scope="col" { "Tokens" } th scope="col" { "Cost" } th scope="col" { "Share" }
                } }
                tbody {
                    @for (rank, user) in list(&usage.top, "users").iter().take(10).enumerate() {
                        tr {
                            td { (rank + 1) }
                            td { @match user.get("user_id").and_then(Value::as_str) {
                                Some(id) => a href=(format!("/console/users/{id}")) { (user.get("name").and_then(Value::as_str).unwrap_or(id)) },
                                None => "(no user)",
                            } }
                            td class="num" { (count(int(user, "total_requests"))) }
                            td class="num" { (count(int(user, "total_tokens"))) }
                            td class="num" { (dollars(dec(user, "estimated_cost_usd"))) }
                            td class="num" { (ratio(dec(user, "estimated_cost_usd"), cost)) }
                        }
                    }
                }
            }
        }
    }
}

/// The request explorer's filters.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RequestFilters {
    user_id: Option<String>,
    access_key_id: Option<String>,
    provider: Option<String>,
    model: Option<String>,
    outcome: Option<String>,
    /// `YYYY-MM-DD`, in the usage time zone.
    start_date: Option<String>,
    end_date: Option<String>,
    before: Option<String>,
}

/// Midnight of `date` (a `YYYY-MM-DD`) in the usage time zone, plus `days`.
fn day_start(page: &Page, date: &str, days: i64) -> Option<String> {
    let date = NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()? + chrono::Duration::days(days);
    let zone = page.state.queries.buckets().zone();
    let start = zone
        .from_local_datetime(&date.and_hms_opt(0, 0, 0)?)
        .earliest()?;
    Some(start.with_timezone(&Utc).to_rfc3339())
}

/// `/console/requests`: the latest requests, filtered.
pub(crate) async fn requests(
    page: Page,
    Query(filters): Query<RequestFilters>,
) -> Result<Response, PageError> {
    let opt = |value: &Option<String>| value.as_deref().unwrap_or_default().trim().to_owned();
    let start = filters
        .start_date
        .as_deref()
        .and_then(|d| day_start(&page, d, 0))
        .unwrap_or_default();
    let end = filters
        .end_date
        .as_deref()
        .and_then(|d| day_start(&page, d, 1))
        .unwrap_or_default();
    let api_query = query(&[
        ("user_id", &opt(&filters.user_id)),
        ("access_key_id", &opt(&filters.access_key_id)),
        ("provider", &opt(&filters.provider)),
        ("model", &opt(&filters.model)),
        ("outcome", &opt(&filters.outcome)),
        ("start_time", &start),
        ("end_time", &end),
        ("before", &opt(&filters.before)),
        ("limit", "50"),
    ]);
    let found: Value = page.get(&format!("/admin/requests?{api_query}")).await?;
    let users: Value = page.get("/admin/users?include_deleted=true").await?;
    let names: BTreeMap<&str, &str> = list(&users, "users")
        .iter()
        .map(|u| (text(u, "id"), text(u, "name")))
        .collect();
    let next = found.get("next_before").and_then(Value::as_i64);
    let older = next.map(|before| {
        format!(
            "/console/requests?{}",
            query(&[
                ("user_id", &opt(&filters.user_id)),
                ("access_key_id", &opt(&filters.access_key_id)),
                ("provider", &opt(&filters.provider)),
                ("model", &opt(&filters.model)),
                ("outcome", &opt(&filters.outcome)),
                ("start_date", &opt(&filters.start_date)),
                ("end_date", &opt(&filters.end_date)),
                ("before", &before.to_string()),
            ])
        )
    });
    let selected = |value: &Option<String>, option: &str| value.as_deref() == Some(option);
    let body = html! {
        form class="filters" method="get" {
            label for="r-user" { "User" }
            select id="r-user" name="user_id" {
                option value="" { "All" }
                @for user in list(&users, "users") {
                    option value=(text(user, "id")) selected[selected(&filters.user_id, text(user, "id"))] { (text(user, "name")) }
                }
            }
            label for="r-key" { "Key id" }
            input id="r-key" name="access_key_id" value=(opt(&filters.access_key_id)) size="14";
            label for="r-provider" { "Provider" }
            select id="r-provider" name="provider" {
                option value="" { "All" }
                @for (id, name) in PROVIDERS { option value=(id) selected[selected(&filters.provider, id)] { (name) } }
            }
            label for="r-model" { "Model" }
            input id="r-model" name="model" value=(opt(&filters.model)) size="18";
            label for="r-outcome" { "Outcome" }
            select id="r-outcome" name="outcome" {
                option value="" { "All" }
                @for outcome in usage_layer::Outcome::ALL.map(usage_layer::Outcome::as_str) { option value=(outcome) selected[selected(&filters.outcome, outcome)] { (outcome) } }
            }
            label for="r-start" { "From" }
            input id="r-start" type="date" name="start_date" value=(opt(&filters.start_date));
            label for="r-end" { "to" }
            input id="r-end" type="date" name="end_date" value=(opt(&filters.end_date));
            button type="submit" { "Filter" }
        }
        table class="requests" {
            caption { "Latest requests, newest first (times in the usage time zone)" }
            thead { tr {
                th scope="col" { "Time" } th scope="col" { "User" } th scope="col" { "Provider" } th scope="col" { "Model" }
                th scope="col" { "Ended" } th scope="col" { "Input" } th scope="col" { "Output" } th scope="col" { "Cache read" }
                th scope="col" { "Cache write" } th scope="col" { "Cost" } th scope="col" { "Price (per million)" }
                th scope="col" { "TTFB" } th scope="col" { "Duration" }
            } }
            tbody {
                @for row in list(&found, "requests") {
                    @let cost = row.get("cost").cloned().unwrap_or(Value::Null);
                    @let price = row.get("price").cloned().unwrap_or(Value::Null);
                    tr data-request-id=(text(row, "request_id")) {
                        td { (when(&page, text(row, "timestamp"))) }
                        td { @match row.get("user_id").and_then(Value::as_str) {
                            Some(id) => a href=(format!("/console/users/{id}")) { (names.get(id).copied().unwrap_or(id)) },
                            None => "—",
                        } }
                        td { (text(row, "provider"))
                            @if let Some(from) = row.get("fallback_from").and_then(Value::as_str) {
                                br; small { "fallback from " (from) ": " (text(row, "fallback_reason")) }
                            }
                        }
                        td { (text(row, "model")) }
                        td { (text(row, "outcome"))
                            @if let Some(status) = row.get("status_code").and_then(Value::as_i64) { " (" (status) ")" }
                            @if let Some(stop) = row.get("stop_reason").and_then(Value::as_str) { br; small { (stop) } }
                            @if let Some(error) = row.get("error_type").and_then(Value::as_str) { br; small { (error) } }
                        }
                        td class="num" data-field="input_tokens" { (count(int(row, "input_tokens"))) }
                        td class="num" data-field="output_tokens" { (count(int(row, "output_tokens"))) }
                        td class="num" data-field="cache_read_tokens" { (count(int(row, "cache_read_tokens"))) }
                        td class="num" data-field="cache_write_tokens" { (count(int(row, "cache_write_tokens"))) }
                        td class="num" data-field="cost" title=(format!("input ${} · output ${} · cache write ${} · cache read ${}", text(&cost, "input_usd"), text(&cost, "output_usd"), text(&cost, "cache_write_usd"), text(&cost, "cache_read_usd"))) {
                            (dollars(dec(&cost, "total_usd")))
                            @if row.get("unpriced").and_then(Value::as_bool) == Some(true) { br; small class="bad" { "unpriced" } }
                        }
                        td { @if price.get("model_id").and_then(Value::as_str).is_some() {
                            small { (text(&price, "model_id")) " " (text(&price, "region")) " " (text(&price, "effective_date")) br;
                                "in $" (text(&price, "input_per_million_usd")) " · out $" (text(&price, "output_per_million_usd"))
                                " · cw $" (text(&price, "cache_write_per_million_usd")) " · cr $" (text(&price, "cache_read_per_million_usd")) }
                        } @else { "—" } }
                        td class="num" { @match row.get("time_to_first_byte_ms").and_then(Value::as_i64) { Some(ms) => (format!("{ms} ms")), None => "—" } }
                        td class="num" { (int(row, "duration_ms")) " ms" }
                    }
                }
            }
        }
        @if list(&found, "requests").is_empty() { p { "No requests match." } }
        @if let Some(older) = older { p { a href=(older) { "Older requests →" } } }
    };
    Ok(page.render("/console/requests", "Requests", body))
}

/// `/console/users`: every user with this month's Bedrock use against the budget.
pub(crate) async fn users(page: Page) -> Result<Response, PageError> {
    let users: Value = page.get("/admin/users").await?;
    let month: Value = page
        .get("/admin/usage/top-users?period=month&provider=bedrock&limit=1000")
        .await?;
    let spent: BTreeMap<&str, Decimal> = list(&month, "users")
        .iter()
        .filter_map(|u| Some((u.get("user_id")?.as_str()?, dec(u, "estimated_cost_usd"))))
        .collect();
    let may_change = page.may_change();
    let body = html! {
        @if may_change {
            details class="create" {
                summary { "Create a user" }
                form data-api="POST /admin/users" {
                    label for="new-name" { "Name" } input id="new-name" name="name" required maxlength="200";
                    label for="new-description" { "Description" } input id="new-description" name="description" maxlength="2000";
                    label for="new-budget" { "Monthly Bedrock budget (USD, empty: unlimited)" }
                    input id="new-budget" name="monthly_budget_usd" inputmode="decimal" data-empty="omit";
                    label for="new-routing" { "Routing" }
                    select id="new-routing" name="routing_strategy" {
                        option value="plan_first" { "Plan first, Bedrock fallback" }
                        option value="bedrock_only" { "Bedrock only" }
                    }
                    button type="submit" { "Create" }
                    p class="error" role="alert" {}
                }
            }
        }
        table {
            caption { "Users (Bedrock cost this month against the budget)" }
            thead { tr {
                th scope="col" { "Name" } th scope="col" { "Status" } th scope="col" { "Routing" }
                th scope="col" { "Bedrock this month" } th scope="col" { "Budget" } th scope="col" { "Created" }
                @if may_change { th scope="col" { span class="visually-hidden" { "Actions" } } }
            } }
            tbody {
                @for user in list(&users, "users") {
                    @let id = text(user, "id");
                    @let used = spent.get(id).copied().unwrap_or_default();
                    @let budget = user.get("monthly_budget_usd").and_then(Value::as_str).and_then(|b| b.parse::<Decimal>().ok());
                    tr {
                        td { a href=(format!("/console/users/{id}")) { (text(user, "name")) }
                            @if let Some(d) = user.get("description").and_then(Value::as_str) { br; small { (d) } } }
                        td { (text(user, "status")) }
                        td { (text(user, "routing_strategy")) }
                        td class="num" { (dollars(used)) }
                        td { @match budget {
                            Some(budget) => { (dollars(budget)) " " (budget_bar(used, budget)) },
                            None => "unlimited",
                        } }
                        td { (when(&page, text(user, "created_at"))) }
                        @if may_change { td {
                            button type="button" class="danger" data-api=(format!("DELETE /admin/users/{id}")) data-confirm=(format!("Delete {}? Their keys are revoked; their usage stays.", text(user, "name"))) { "Delete" }
                        } }
                    }
                }
            }
        }
    };
    Ok(page.render("/console/users", "Users", body))
}

fn budget_bar(used: Decimal, budget: Decimal) -> Markup {
    let percent = if budget.is_zero() {
        100.0
    } else {
        (to_f64(used / budget) * 100.0).clamp(0.0, 100.0)
    };
    html! {
        meter min="0" max="100" low="80" high="95" optimum="0" value=(format!("{percent:.1}")) aria-label="budget used" { (format!("{percent:.1}%")) }
        " " (format!("{percent:.1}%"))
    }
}

/// `/console/users/{id}`: profile, budget, usage by provider and model, keys.
pub(crate) async fn user(
    page: Page,
    Path(user_id): Path<String>,
    Query(params): Query<RangeParams>,
) -> Result<Response, PageError> {
    let id = url::form_urlencoded::byte_serialize(user_id.as_bytes()).collect::<String>();
    let user: Value = page.get(&format!("/admin/users/{id}")).await?;
    let keys: Value = page.get(&format!("/admin/users/{id}/keys")).await?;
    let budget: Value = page.get(&format!("/admin/users/{id}/budget")).await?;
    let (range, _) = params.api("month")?;
    let mut usage = Vec::new();
    for (provider, name) in PROVIDERS {
        let value: Value = page
            .get(&format!(
                "/admin/usage?{range}&provider={provider}&user_id={id}"
            ))
            .await?;
        usage.push((provider, name, value));
    }
    let may_change = page.may_change();
    let active_keys = list(&keys, "keys")
        .iter()
        .filter(|k| matches!(text(k, "status"), "active" | "rotating"))
        .count();
    let used = dec(&budget, "current_usage_usd");
    let limit = budget
        .get("monthly_budget_usd")
        .and_then(Value::as_str)
        .and_then(|b| b.parse::<Decimal>().ok());
    let body = html! {
        section class="profile" {
            dl {
                dt { "Name" } dd { (text(&user, "name")) }
                dt { "Description" } dd { (user.get("description").and_then(Value::as_str).unwrap_or("—")) }
                dt { "Status" } dd { (text(&user, "status")) }
                dt { "Routing" } dd { (text(&user, "routing_strategy")) }
                dt { "Keys" } dd { (active_keys) " active of " (list(&keys, "keys").len()) }
                dt { "Created" } dd { (when(&page, text(&user, "created_at"))) }
            }
        }
        section class="budget" aria-labelledby="budget-heading" {
            h2 id="budget-heading" { "Monthly Bedrock budget" }
            p {
                "Used " strong data-metric="budget.used" { (dollars(used)) }
                @match limit {
                    Some(limit) => { " of " strong { (dollars(limit)) } " " (budget_bar(used, limit)) },
                    None => " — unlimited",
                }
            }
            @if may_change {
                form data-api=(format!("PUT /admin/users/{id}/budget")) class="inline" {
                    label for="budget" { "Budget (USD)" }
                    input id="budget" name="monthly_budget_usd" inputmode="decimal" required;
                    button type="submit" { "Set" }
                    p class="error" role="alert" {}
                }
                form data-api=(format!("PUT /admin/users/{id}/budget")) class="inline" {
                    input type="hidden" name="monthly_budget_usd" value="" data-empty="null";
                    button type="submit" { "Make unlimited" }
                }
            }
        }
        (range_form(&params, "month", None))
        div class="providers" {
            @for (provider, name, value) in &usage {
                section class="provider" {
                    h2 { (name) }
                    div class="cards" {
                        (card(&format!("{provider}.cost"), "Estimated cost", dollars(dec(value, "estimated_cost_usd")), None))
                        (card(&format!("{provider}.requests"), "Requests", count(int(value, "total_requests")), None))
                        (card(&format!("{provider}.total_tokens"), "Tokens", count(int(value, "total_tokens")), None))
                    }
                    table {
                        caption { (name) " by model" }
                        thead { tr { th scope="col" { "Model" } th scope="col" { "Requests" } th scope="col" { "Input" } th scope="col" { "Output" } th scope="col" { "Cost" } } }
                        tbody { @for model in list(value, "cost_breakdown") {
                            tr {
                                td { (model.get("pricing_model_id").and_then(Value::as_str).unwrap_or("unpriced")) }
                                td class="num" { (count(int(model, "requests"))) }
                                td class="num" { (count(int(model, "input_tokens"))) }
                                td class="num" { (count(int(model, "output_tokens"))) }
                                td class="num" { (dollars(dec(model, "total_cost_usd"))) }
                            }
                        } }
                    }
                }
            }
        }
        section class="keys" aria-labelledby="keys-heading" {
            h2 id="keys-heading" { "Access keys" }
            @if may_change {
                form data-api=(format!("POST /admin/users/{id}/keys")) class="inline" {
                    label for="key-name" { "New key's name" }
                    input id="key-name" name="name" maxlength="200" data-empty="omit";
                    button type="submit" { "Issue a key" }
                    p class="error" role="alert" {}
                }
            }
            table {
                caption { "Keys" }
                thead { tr {
                    th scope="col" { "Prefix" } th scope="col" { "Name" } th scope="col" { "Status" } th scope="col" { "Last used" }
                    th scope="col" { "Bedrock" }
                    @if may_change { th scope="col" { span class="visually-hidden" { "Actions" } } }
                } }
                tbody { @for key in list(&keys, "keys") {
                    @let key_id = text(key, "id");
                    @let live = matches!(text(key, "status"), "active" | "rotating");
                    tr {
                        td { code { (text(key, "key_prefix")) } }
                        td { (key.get("name").and_then(Value::as_str).unwrap_or("—")) }
                        td { (text(key, "status"))
                            @if let Some(expires) = key.get("expires_at").and_then(Value::as_str) { br; small { "until " (when(&page, expires)) } } }
                        td { (key.get("last_used_at").and_then(Value::as_str).map_or_else(|| "never".to_owned(), |at| when(&page, at))) }
                        td {
                            "region " (key.get("bedrock_region").and_then(Value::as_str).unwrap_or("default"))
                            @if let Some(credential) = key.get("bedrock_credential").filter(|c| !c.is_null()) {
                                br; small { "own key " code { (text(credential, "fingerprint")) } " (" (text(credential, "encryption")) ")" }
                            }
                        }
                        @if may_change { td class="actions" {
                            @if live {
                                button type="button" data-api=(format!("POST /admin/keys/{key_id}/rotate")) data-confirm="Rotate this key? The old one keeps working for the grace period." { "Rotate" }
                                button type="button" class="danger" data-api=(format!("POST /admin/keys/{key_id}/revoke")) data-confirm="Revoke this key? Requests with it are refused at once." { "Revoke" }
                                details {
                                    summary { "Bedrock settings" }
                                    form data-api=(format!("PATCH /admin/keys/{key_id}")) {
                                        label for=(format!("region-{key_id}")) { "Region (empty: the server's)" }
                                        input id=(format!("region-{key_id}")) name="bedrock_region" value=[key.get("bedrock_region").and_then(Value::as_str)] data-empty="null";
                                        button type="submit" { "Save region" }
                                        p class="error" role="alert" {}
                                    }
                                    form data-api=(format!("PUT /admin/keys/{key_id}/bedrock-credential")) {
                                        label for=(format!("bedrock-key-{key_id}")) { "Bedrock API key" }
                                        input id=(format!("bedrock-key-{key_id}")) name="api_key" type="password" autocomplete="off" required;
                                        button type="submit" { "Register" }
                                        p class="error" role="alert" {}
                                    }
                                    @if key.get("bedrock_credential").is_some_and(|c| !c.is_null()) {
                                        button type="button" class="danger" data-api=(format!("DELETE /admin/keys/{key_id}/bedrock-credential")) data-confirm="Unlink this key's Bedrock key?" { "Unlink Bedrock key" }
                                    }
                                }
                            }
                        } }
                    }
                } }
            }
        }
    };
    Ok(page.render(
        "/console/users",
        &format!("User: {}", text(&user, "name")),
        body,
    ))
}

/// `/console/mappings`: which Claude model goes to which Bedrock model.
pub(crate) async fn mappings(page: Page) -> Result<Response, PageError> {
    let mappings: Value = page.get("/admin/model-mappings").await?;
    let may_change = page.may_change();
    let body = html! {
        @if may_change {
            details class="create" {
                summary { "Map a model" }
                form data-api="POST /admin/model-mappings" {
                    label for="claude-model" { "Claude model (as clients ask for it)" }
                    input id="claude-model" name="claude_model" required pattern="[A-Za-z0-9._:\\-]{1,128}";
                    label for="bedrock-model" { "Bedrock model id" }
                    input id="bedrock-model" name="bedrock_model" required maxlength="256";
                    label for="mapping-description" { "Description" }
                    input id="mapping-description" name="description" data-empty="omit";
                    button type="submit" { "Create" }
                    p class="error" role="alert" {}
                }
            }
        }
        table {
            caption { "Model mappings (applied within seconds on every instance)" }
            thead { tr {
                th scope="col" { "Claude model" } th scope="col" { "Bedrock model" } th scope="col" { "Description" } th scope="col" { "Active" }
                @if may_change { th scope="col" { span class="visually-hidden" { "Actions" } } }
            } }
            tbody { @for mapping in list(&mappings, "mappings") {
                @let id = text(mapping, "id");
                @let active = mapping.get("is_active").and_then(Value::as_bool).unwrap_or(false);
                tr {
                    td { code { (text(mapping, "claude_model")) } }
                    td { code { (text(mapping, "bedrock_model")) } }
                    td { (mapping.get("description").and_then(Value::as_str).unwrap_or("")) }
                    td { (if active { "yes" } else { "no" }) }
                    @if may_change { td class="actions" {
                        details class="edit" {
                            summary { "Edit" span class="visually-hidden" { " the mapping of " (text(mapping, "claude_model")) } }
                            form data-api=(format!("PATCH /admin/model-mappings/{id}")) {
                                label for=(format!("bedrock-{id}")) { "Bedrock model id" }
                                input id=(format!("bedrock-{id}")) name="bedrock_model" required maxlength="256" value=(text(mapping, "bedrock_model"));
                                label for=(format!("description-{id}")) { "Description" }
                                input id=(format!("description-{id}")) name="description" data-empty="null" value=(mapping.get("description").and_then(Value::as_str).unwrap_or(""));
                                button type="submit" { "Save" }
                                p class="error" role="alert" {}
                            }
                        }
                        button type="button" data-api=(format!("PATCH /admin/model-mappings/{id}")) data-body=(if active { r#"{"is_active":false}"# } else { r#"{"is_active":true}"# }) { (if active { "Deactivate" } else { "Activate" }) }
                        button type="button" class="danger" data-api=(format!("DELETE /admin/model-mappings/{id}")) data-confirm=(format!("Delete the mapping of {}?", text(mapping, "claude_model"))) { "Delete" }
                    } }
                }
            } }
        }
    };
    Ok(page.render("/console/mappings", "Model mappings", body))
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct PriceParams {
    provider: Option<String>,
    model: Option<String>,
}

/// `/console/prices`: the effective prices and the overrides set here.
pub(crate) async fn prices(
    page: Page,
    Query(params): Query<PriceParams>,
) -> Result<Response, PageError> {
    let prices: Value = page.get("/admin/pricing").await?;
    let overrides: Value = page.get("/admin/pricing/overrides").await?;
    let may_change = page.may_change();
    let columns = [
        "input_price_per_million",
        "output_price_per_million",
        "cache_write_price_per_million",
        "cache_write_1h_price_per_million",
        "cache_read_price_per_million",
    ];
    let body = html! {
        @if may_change {
            details class="create" open[params.model.is_some()] {
                summary { "Set a price" }
                form data-api="POST /admin/pricing/overrides" {
                    label for="price-provider" { "Provider" }
                    select id="price-provider" name="provider" {
                        @for (id, name) in PROVIDERS { option value=(id) selected[params.provider.as_deref() == Some(id)] { (name) } }
                    }
                    label for="price-region" { "Region (empty: the provider's default)" }
                    input id="price-region" name="region" data-empty="omit";
                    label for="price-model" { "Model" }
                    input id="price-model" name="model" required value=[params.model.as_deref()];
                    label for="price-date" { "Effective from (empty: today)" }
                    input id="price-date" type="date" name="effective_date" data-empty="omit";
                    label for="price-input" { "Input, USD per million tokens" }
                    input id="price-input" name="input_price_per_million" inputmode="decimal" required;
                    label for="price-output" { "Output, USD per million tokens" }
                    input id="price-output" name="output_price_per_million" inputmode="decimal" required;
                    label for="price-cw" { "Cache write (5 min), empty: 1.25 × input" }
                    input id="price-cw" name="cache_write_price_per_million" inputmode="decimal" data-empty="omit";
                    label for="price-cw1h" { "Cache write (1 h), empty: 2 × input" }
                    input id="price-cw1h" name="cache_write_1h_price_per_million" inputmode="decimal" data-empty="omit";
                    label for="price-cr" { "Cache read, empty: 0.1 × input" }
                    input id="price-cr" name="cache_read_price_per_million" inputmode="decimal" data-empty="omit";
                    button type="submit" { "Save" }
                    p class="error" role="alert" {}
                }
            }
        }
        table {
            caption { "Overrides" }
            thead { tr {
                th scope="col" { "Provider" } th scope="col" { "Region" } th scope="col" { "Model" } th scope="col" { "From" } th scope="col" { "In force" }
                th scope="col" { "Input" } th scope="col" { "Output" } th scope="col" { "Cache write" } th scope="col" { "Cache write 1 h" } th scope="col" { "Cache read" }
                @if may_change { th scope="col" { span class="visually-hidden" { "Actions" } } }
            } }
            tbody { @for row in list(&overrides, "overrides") {
                tr {
                    td { (text(row, "provider")) } td { (text(row, "region")) } td { code { (text(row, "model")) } }
                    td { (text(row, "effective_date")) }
                    td { (if row.get("in_force").and_then(Value::as_bool) == Some(true) { "yes" } else { "no" }) }
                    @for column in columns { td class="num" { "$" (text(row, column)) } }
                    @if may_change { td {
                        button type="button" class="danger" data-api=(format!("DELETE /admin/pricing/overrides/{}", text(row, "id"))) data-confirm="Delete this override?" { "Delete" }
                    } }
                }
            } }
        }
        table {
            caption { "Effective prices (USD per million tokens)" }
            thead { tr {
                th scope="col" { "Provider" } th scope="col" { "Region" } th scope="col" { "Model" } th scope="col" { "From" }
                th scope="col" { "Input" } th scope="col" { "Output" } th scope="col" { "Cache write" } th scope="col" { "Cache write 1 h" } th scope="col" { "Cache read" }
            } }
            tbody { @for row in list(&prices, "prices") {
                tr {
                    td { (text(row, "provider")) } td { (text(row, "region")) } td { code { (text(row, "model")) } } td { (text(row, "effective_date")) }
                    @for column in columns { td class="num" { "$" (text(row, column)) } }
                }
            } }
        }
    };
    Ok(page.render("/console/prices", "Prices", body))
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct AuditParams {
    actor: Option<String>,
    before: Option<String>,
}

/// `/console/audit`: who changed what, when.
pub(crate) async fn audit(
    page: Page,
    Query(params): Query<AuditParams>,
) -> Result<Response, PageError> {
    let actor = params.actor.as_deref().unwrap_or_default();
    let log: Value = page
        .get(&format!(
            "/admin/audit-log?{}",
            query(&[
                ("actor", actor),
                ("before", params.before.as_deref().unwrap_or_default())
            ])
        ))
        .await?;
    let entries = list(&log, "entries");
    let older = (entries.len() == 100)
        .then(|| {
            entries.last().map(|last| {
                format!(
                    "/console/audit?{}",
                    query(&[("actor", actor), ("before", text(last, "id"))])
                )
            })
        })
        .flatten();
    let body = html! {
        form class="filters" method="get" {
            label for="a-actor" { "Actor" }
            input id="a-actor" name="actor" value=(actor) placeholder="admin:alice, token";
            button type="submit" { "Filter" }
        }
        table {
            caption { "Changes and logins, newest first" }
            thead { tr { th scope="col" { "When" } th scope="col" { "Who" } th scope="col" { "What" } th scope="col" { "On" } th scope="col" { "Status" } th scope="col" { "Detail" } } }
            tbody { @for entry in entries {
                tr {
                    td { (when(&page, text(entry, "at"))) }
                    td { (text(entry, "actor")) }
                    td { code { (text(entry, "action")) } }
                    td { (entry.get("target").and_then(Value::as_str).unwrap_or("")) }
                    td class="num" { (int(entry, "status")) }
                    td { (entry.get("detail").and_then(Value::as_str).unwrap_or("")) }
                }
            } }
        }
        @if let Some(older) = older { p { a href=(older) { "Older entries →" } } }
    };
    Ok(page.render("/console/audit", "Audit log", body))
}
