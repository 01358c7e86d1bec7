//! The Postgres write path: a whole chunk of rows as **one array per column**.
//!
//! ```sql
//! INSERT INTO t (a, b)
//! SELECT CASE WHEN (r.nulls & 1) = 0 THEN r.a END, CASE WHEN (r.nulls & 2) = 0 THEN r.b END
//! FROM UNNEST($1::text[], $2::int8[], $3::int8[]) WITH ORDINALITY AS r(a, b, nulls, ord)
//! ORDER BY r.ord
//! ON CONFLICT …
//! ```
//!
//! A multi-row `VALUES` list binds one parameter per cell and is parsed and planned per
//! row count; this statement has one parameter per column whatever the row count, so its
//! text is fixed, it is prepared once per connection, and the values travel as packed
//! binary arrays. The rows are taken in the order given (`ORDER BY r.ord`): the
//! aggregates' upsert relies on it to lock rows in key order.
//!
//! sqlx encodes arrays of non-null elements only, so a NULL travels as a placeholder of
//! its column's type together with one `int8` per row whose bit `i` says "column `i` is
//! NULL"; the `CASE` turns the placeholder back into NULL. Every column goes through
//! the same `CASE`, nullable or not, so no column can be NULL by mistake or lose one.

use sea_orm::sea_query::ArrayType;
use sea_orm::{DbErr, Value};

/// The most columns a row can have: one bit each in the `int8` null mask.
const MAX_COLUMNS: usize = 63;

/// Rows as array parameters, and the SQL that reads them back as a table.
pub(super) struct Arrays {
    /// `r`, the alias of the rows in `from`.
    alias: &'static str,
    /// The columns, quoted.
    columns: Vec<String>,
    /// Per column, its value with NULL restored from the row's mask.
    selected: Vec<String>,
    /// `UNNEST($i::type[], …) WITH ORDINALITY AS r(…, "#nulls", "#ord")`.
    from: String,
    /// The parameters, in order.
    pub(super) values: Vec<Value>,
}

impl Arrays {
    /// `rows` as parameters `$first…`, of `columns`. Every row holds one value per
    /// column, of the same type in every row (the first row's types are the arrays').
    pub(super) fn new<const N: usize>(
        alias: &'static str,
        columns: &[&str; N],
        rows: impl IntoIterator<Item = [Value; N]>,
        first: usize,
    ) -> Result<Self, DbErr> {
        const { assert!(N <= MAX_COLUMNS, "one bit per column in an int8") };
        let mut arrays: Vec<Vec<Value>> = (0..N).map(|_| Vec::new()).collect();
        let mut nulls = Vec::new();
        let mut types: Option<[(ArrayType, &'static str); N]> = None;
        for row in rows {
            let row_types = match &types {
                Some(types) => types,
                None => types.insert(column_types(columns, &row)?),
            };
            let mut mask = 0i64;
            for (index, (value, (array, (_, sql_type)))) in row
                .into_iter()
                .zip(arrays.iter_mut().zip(row_types))
                .enumerate()
            {
                if sql_type_of(&value) != Some(*sql_type) {
                    return Err(mixed_types(columns[index]));
                }
                if value_is_null(&value) {
                    mask |= 1 << index;
                    array.push(placeholder(&value));
                } else {
                    array.push(value);
                }
            }
            nulls.push(Value::BigInt(Some(mask)));
        }
        let Some(types) = types else {
            return Err(DbErr::Custom(
                "an UNNEST insert needs at least one row".into(),
            ));
        };

        let quoted: Vec<String> = columns.iter().map(|column| quote(column)).collect();
        let selected = quoted
            .iter()
            .enumerate()
            .map(|(index, column)| {
                format!(
                    "CASE WHEN ({alias}.\"#nulls\" & {}) = 0 THEN {alias}.{column} END",
                    1i64 << index
                )
            })
            .collect();
        let parameters: Vec<String> = types
            .iter()
            .enumerate()
            .map(|(index, (_, sql_type))| format!("${}::{sql_type}[]", first + index))
            .chain([format!("${}::int8[]", first + N)])
            .collect();
        let from = format!(
            "UNNEST({}) WITH ORDINALITY AS {alias}({}, \"#nulls\", \"#ord\")",
            parameters.join(", "),
            quoted.join(", "),
        );
        let values = arrays
            .into_iter()
            .zip(types)
            .map(|(array, (array_type, _))| Value::Array(array_type, Some(Box::new(array))))
            .chain([Value::Array(ArrayType::BigInt, Some(Box::new(nulls)))])
            .collect();
        Ok(Self {
            alias,
            columns: quoted,
            selected,
            from,
            values,
        })
    }

    /// `INSERT INTO table (…) SELECT … FROM UNNEST(…) [WHERE filter] ORDER BY ord tail`.
    pub(super) fn insert_into(&self, table: &str, filter: Option<&str>, tail: &str) -> String {
        let filter = filter.map(|filter| format!(" WHERE {filter}"));
        format!(
            "INSERT INTO {} ({}) SELECT {} FROM {}{} ORDER BY {}.\"#ord\" {tail}",
            quote(table),
            self.columns.join(", "),
            self.selected.join(", "),
            self.from,
            filter.unwrap_or_default(),
            self.alias,
        )
    }
}

/// `"name"`, for names of our own schema (no quotes inside).
pub(super) fn quote(name: &str) -> String {
    debug_assert!(!name.contains('"'));
    format!("\"{name}\"")
}

fn column_types<const N: usize>(
    columns: &[&str; N],
    row: &[Value; N],
) -> Result<[(ArrayType, &'static str); N], DbErr> {
    let mut types = [(); N].map(|()| (ArrayType::BigInt, ""));
    for (index, value) in row.iter().enumerate() {
        let sql_type = sql_type_of(value).ok_or_else(|| {
            DbErr::Custom(format!(
                "column {:?}: no Postgres array for a value of {value:?}",
                columns[index]
            ))
        })?;
        types[index] = (array_type(value), sql_type);
    }
    Ok(types)
}

fn mixed_types(column: &str) -> DbErr {
    DbErr::Custom(format!(
        "column {column:?}: rows of one UNNEST insert hold values of different types"
    ))
}

/// The Postgres element type of a value's array; `None` for types the store never writes.
fn sql_type_of(value: &Value) -> Option<&'static str> {
    Some(match value {
        Value::Bool(_) => "bool",
        Value::Int(_) => "int4",
        Value::BigInt(_) => "int8",
        Value::String(_) => "text",
        Value::ChronoDate(_) => "date",
        Value::ChronoDateTimeUtc(_) => "timestamptz",
        _ => return None,
    })
}

fn array_type(value: &Value) -> ArrayType {
    match value {
        Value::Bool(_) => ArrayType::Bool,
        Value::Int(_) => ArrayType::Int,
        Value::String(_) => ArrayType::String,
        Value::ChronoDate(_) => ArrayType::ChronoDate,
        Value::ChronoDateTimeUtc(_) => ArrayType::ChronoDateTimeUtc,
        _ => ArrayType::BigInt,
    }
}

fn value_is_null(value: &Value) -> bool {
    matches!(
        value,
        Value::Bool(None)
            | Value::Int(None)
            | Value::BigInt(None)
            | Value::String(None)
            | Value::ChronoDate(None)
            | Value::ChronoDateTimeUtc(None)
    )
}

/// A non-null value of `null`'s type, sent in its place (the mask makes it NULL again).
fn placeholder(null: &Value) -> Value {
    match null {
        Value::Bool(_) => Value::Bool(Some(false)),
        Value::Int(_) => Value::Int(Some(0)),
        Value::String(_) => Value::String(Some(String::new())),
        Value::ChronoDate(_) => Value::ChronoDate(Some(chrono::DateTime::UNIX_EPOCH.date_naive())),
        Value::ChronoDateTimeUtc(_) => Value::ChronoDateTimeUtc(Some(chrono::DateTime::UNIX_EPOCH)),
        _ => Value::BigInt(Some(0)),
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{DbBackend, Statement};

    use super::*;

    /// An `INSERT … SELECT … FROM UNNEST(…)` of `rows` into `table`'s `columns`, followed by
    /// `tail` (`ON CONFLICT …`, `RETURNING …`). Every row holds one value per column, of the
    /// same type in every row (the first row's types are the arrays' types).
    fn insert<const N: usize>(
        table: &str,
        columns: &[&str; N],
        rows: impl IntoIterator<Item = [Value; N]>,
        tail: &str,
    ) -> Result<Statement, DbErr> {
        let source = Arrays::new("r", columns, rows, 1)?;
        let sql = source.insert_into(table, None, tail);
        Ok(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            source.values,
        ))
    }

    #[test]
    fn the_statement_text_does_not_depend_on_the_rows() {
        let row = |id: &str, n: Option<i64>| [Value::from(id.to_owned()), Value::BigInt(n)];
        let one = insert("t", &["id", "n"], [row("a", Some(1))], "").unwrap();
        let three = insert(
            "t",
            &["id", "n"],
            [row("a", None), row("b", Some(2)), row("c", None)],
            "",
        )
        .unwrap();
        assert_eq!(one.sql, three.sql);
        assert_eq!(
            one.sql,
            "INSERT INTO \"t\" (\"id\", \"n\") SELECT CASE WHEN (r.\"#nulls\" & 1) = 0 THEN r.\"id\" END, \
             CASE WHEN (r.\"#nulls\" & 2) = 0 THEN r.\"n\" END FROM UNNEST($1::text[], $2::int8[], $3::int8[]) \
             WITH ORDINALITY AS r(\"id\", \"n\", \"#nulls\", \"#ord\") ORDER BY r.\"#ord\" "
        );
        let values = three.values.unwrap().0;
        assert_eq!(values.len(), 3);
        assert_eq!(
            values[2],
            Value::Array(
                ArrayType::BigInt,
                Some(Box::new(vec![
                    Value::BigInt(Some(2)),
                    Value::BigInt(Some(0)),
                    Value::BigInt(Some(2))
                ]))
            )
        );
        assert_eq!(
            values[1],
            Value::Array(
                ArrayType::BigInt,
                Some(Box::new(vec![
                    Value::BigInt(Some(0)),
                    Value::BigInt(Some(2)),
                    Value::BigInt(Some(0))
                ]))
            )
        );
    }

    #[test]
    fn no_rows_or_mixed_types_are_errors_not_panics() {
        let none: [[Value; 1]; 0] = [];
        assert!(insert("t", &["id"], none, "").is_err());
        let mixed = [[Value::BigInt(Some(1))], [Value::String(Some("x".into()))]];
        let error = insert("t", &["id"], mixed, "").unwrap_err().to_string();
        assert!(error.contains("different types"), "{error}");
        let unsupported = [[Value::Double(Some(1.0))]];
        assert!(insert("t", &["id"], unsupported, "").is_err());
    }
}
