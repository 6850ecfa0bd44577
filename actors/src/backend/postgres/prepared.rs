//! Fixed SQL texts run as statements each connection prepares once and
//! caches (keyed by the text): one round trip, parsed once, and planned once
//! PostgreSQL settles on a generic plan. `diesel::sql_query` marks its
//! statements uncacheable, so each of its executions is a prepare round
//! trip, an execute round trip and a fresh parse and plan.

use diesel::QueryResult;

/// A bind value of a [`Prepared`] statement.
pub(crate) trait BindValue: Sync {
    fn push<'b>(&'b self, out: &mut diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>) -> QueryResult<()>;
}

/// A value bound as SQL type `ST`.
pub(crate) struct Bind<ST, T>(T, std::marker::PhantomData<fn() -> ST>);

/// `value`, bound as SQL type `ST` (`bind::<BigInt, _>(pk)`).
pub(crate) fn bind<ST, T>(value: T) -> Bind<ST, T> {
    Bind(value, std::marker::PhantomData)
}

impl<ST, T> BindValue for Bind<ST, T>
where
    diesel::pg::Pg: diesel::sql_types::HasSqlType<ST>,
    T: diesel::serialize::ToSql<ST, diesel::pg::Pg> + Sync,
{
    fn push<'b>(&'b self, out: &mut diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>) -> QueryResult<()> {
        out.push_bind_param::<ST, T>(&self.0)
    }
}

/// A fixed statement with `$n` placeholders (`binds[n - 1]`), loaded with
/// `QueryableByName` like `sql_query`, but prepared once per connection.
/// The text must be one of a fixed set (each text is a cache entry).
pub(crate) struct Prepared<'a> {
    sql: &'a str,
    binds: &'a [&'a dyn BindValue],
}

/// The statement `sql` with `binds` for `$1`, `$2`, …
pub(crate) fn prepared<'a>(sql: &'a str, binds: &'a [&'a dyn BindValue]) -> Prepared<'a> {
    Prepared { sql, binds }
}

impl diesel::query_builder::QueryId for Prepared<'_> {
    type QueryId = ();
    // No type id: the statement cache keys it by its text and bind types.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl diesel::query_builder::Query for Prepared<'_> {
    type SqlType = diesel::sql_types::Untyped;
}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for Prepared<'_> {
    fn walk_ast<'b>(&'b self, mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>) -> QueryResult<()> {
        // Each `$n` becomes a bind pushed in place (diesel numbers them in
        // order again); a placeholder used twice binds its value twice.
        let mut rest = self.sql;
        while let Some(at) = rest.find('$') {
            out.push_sql(&rest[..at]);
            let digits = rest[at + 1..].bytes().take_while(u8::is_ascii_digit).count();
            let n: usize = rest[at + 1..at + 1 + digits]
                .parse()
                .map_err(|_| diesel::result::Error::QueryBuilderError("`$` without a bind number".into()))?;
            let value = n
                .checked_sub(1)
                .and_then(|i| self.binds.get(i))
                .ok_or_else(|| diesel::result::Error::QueryBuilderError(format!("no value for ${n}").into()))?;
            value.push(&mut out)?;
            rest = &rest[at + 1 + digits..];
        }
        out.push_sql(rest);
        Ok(())
    }
}

/// Byte strings bound as one `bytea[]`, each written once into the bind
/// buffer. diesel's own array binding serialises every element into a
/// scratch buffer and copies it again: for a group of 64 KiB blocks that
/// second copy was about a tenth of the server's copying (BENCHMARKS.md).
#[derive(Debug)]
pub(crate) struct ByteaArray<'a>(pub Vec<&'a [u8]>);

impl diesel::serialize::ToSql<diesel::sql_types::Array<diesel::sql_types::Bytea>, diesel::pg::Pg> for ByteaArray<'_> {
    fn to_sql<'b>(&'b self, out: &mut diesel::serialize::Output<'b, '_, diesel::pg::Pg>) -> diesel::serialize::Result {
        use std::io::Write;
        /// `pg_type.oid` of `bytea`, fixed by PostgreSQL.
        const BYTEA_OID: u32 = 17;
        let count = i32::try_from(self.0.len())?;
        // PostgreSQL's binary array format (array_recv), as diesel writes
        // it: one dimension, no nulls, the element type, the dimension's
        // length and lower bound, then each element's length and bytes.
        for header in [1, 0, BYTEA_OID as i32, count, 1] {
            out.write_all(&header.to_be_bytes())?;
        }
        for bytes in &self.0 {
            out.write_all(&i32::try_from(bytes.len())?.to_be_bytes())?;
            out.write_all(bytes)?;
        }
        Ok(diesel::serialize::IsNull::No)
    }
}

/// The rows of a group statement (one over `unnest(...) WITH ORDINALITY`),
/// each in the slot of its request: `ordinal` gives a row's `n`, counted
/// from 1; a request that got no row keeps `None`.
pub(crate) fn by_ordinal<R>(
    rows: Vec<R>,
    requests: usize,
    ordinal: impl Fn(&R) -> i64,
) -> Result<Vec<Option<R>>, crate::backend::Internal> {
    let mut slots: Vec<Option<R>> = std::iter::repeat_with(|| None).take(requests).collect();
    for row in rows {
        let slot = usize::try_from(ordinal(&row) - 1)
            .ok()
            .and_then(|i| slots.get_mut(i))
            .ok_or_else(|| crate::backend::Internal(anyhow::anyhow!("group statement answered an unknown request")))?;
        *slot = Some(row);
    }
    Ok(slots)
}
