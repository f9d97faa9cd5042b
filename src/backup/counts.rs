//! What a database holds, as the manifest records it and restores and
//! drills check it: exact row counts of every user table, and Django's
//! migration state.

use std::collections::BTreeMap;

use anyhow::Context;
use tokio_postgres::Client;

use super::pod_env::Pg;

/// Connect to database `dbname` of `server`; the connection runs in the
/// background until the client is dropped.
pub async fn connect(server: &Pg, dbname: &str) -> anyhow::Result<Client> {
    let (client, connection) = server
        .config(dbname)
        .connect(tokio_postgres::NoTls)
        .await
        .with_context(|| format!("connecting to database {dbname} as {server:?}"))?;
    tokio::spawn(connection);
    Ok(client)
}

/// `name` quoted as an SQL identifier.
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Exact row counts of every user table, keyed `schema.table`.
pub async fn tables(client: &Client) -> anyhow::Result<BTreeMap<String, u64>> {
    let rows = client
        .query(
            "SELECT n.nspname, c.relname FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p') \
               AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
               AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%' \
               AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid \
                               AND d.classid = 'pg_class'::regclass AND d.deptype = 'e') \
             ORDER BY 1, 2",
            &[],
        )
        .await
        .context("listing the tables")?;
    let mut counts = BTreeMap::new();
    for row in rows {
        let (schema, table): (String, String) = (row.get(0), row.get(1));
        let count: i64 = client
            .query_one(
                &format!("SELECT count(*) FROM {}.{}", quote(&schema), quote(&table)),
                &[],
            )
            .await
            .with_context(|| format!("counting the rows of {schema}.{table}"))?
            .get(0);
        counts.insert(format!("{schema}.{table}"), count.max(0) as u64);
    }
    Ok(counts)
}

/// Django's migration state: per app, the name of the last applied
/// migration (by id) in `django_migrations`; empty when there is no such
/// table on the search path.
pub async fn migrations(client: &Client) -> anyhow::Result<BTreeMap<String, String>> {
    let exists: bool = client
        .query_one("SELECT to_regclass('django_migrations') IS NOT NULL", &[])
        .await
        .context("looking for django_migrations")?
        .get(0);
    if !exists {
        return Ok(BTreeMap::new());
    }
    let rows = client
        .query(
            "SELECT DISTINCT ON (app) app::text, name::text FROM django_migrations \
             ORDER BY app, id DESC",
            &[],
        )
        .await
        .context("reading django_migrations")?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

/// The manifest's tables whose counts differ from those found: table →
/// (expected, found), a table not found counting as 0 rows (and listed even
/// when it had none). Tables the manifest does not know are left out: a
/// restore keeps tables created after the backup.
pub fn mismatches(
    expected: &BTreeMap<String, u64>,
    found: &BTreeMap<String, u64>,
) -> BTreeMap<String, (u64, u64)> {
    expected
        .iter()
        .filter_map(|(table, &want)| match found.get(table) {
            Some(&got) if got == want => None,
            got => Some((table.clone(), (want, got.copied().unwrap_or(0)))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mismatches_name_differing_and_missing_tables() {
        let expected = BTreeMap::from([("public.a".to_owned(), 3), ("public.b".to_owned(), 0)]);
        let found = BTreeMap::from([("public.a".to_owned(), 2), ("public.c".to_owned(), 9)]);
        let diff = mismatches(&expected, &found);
        assert_eq!(diff.get("public.a"), Some(&(3, 2)));
        assert_eq!(diff.get("public.b"), Some(&(0, 0)));
        assert_eq!(diff.len(), 2);
        assert!(mismatches(&expected, &expected).is_empty());
        assert_eq!(quote("we\"ird"), "\"we\"\"ird\"");
    }
}
