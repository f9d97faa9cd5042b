//! The agent's settings, read from the environment its pod template sets
//! (`berth db agent ...`): the bucket and key prefix, the backup to work on,
//! who and what started it, and the libpq variables of the database. A
//! missing or malformed variable is an input error naming it.
//!
//! Credentials stay in the environment: children (pg_dump, pg_restore)
//! inherit them and the S3 client reads them there; none is ever put in argv.

use std::collections::BTreeMap;

use anyhow::Context;
use serde::Deserialize;

use super::layout::{self, Layout};
use super::manifest::{ReleaseRef, Trigger};
use super::store::{BackupStore, SETTINGS};
use crate::config::Retention;
use crate::error::input_error;
use crate::s3::Store;

/// Everything the agent reads from its environment.
#[derive(Debug, Clone)]
pub struct AgentEnv {
    /// `BERTH_ENVIRONMENT`: the environment, as berth.yaml names it.
    pub environment: String,
    /// `BERTH_BACKUP_BUCKET`.
    pub bucket: String,
    /// `BERTH_BACKUP_PREFIX` (default `<environment>/`).
    pub prefix: String,
    /// `BERTH_BACKUP_ENDPOINT`, unless `AWS_ENDPOINT_URL` is set (which wins).
    pub endpoint: Option<String>,
    /// `BERTH_BACKUP_REGION`, unless `AWS_REGION` is set (which wins).
    pub region: Option<String>,
    /// `BERTH_BACKUP_ID`, checked to have a backup id's shape.
    pub backup_id: Option<String>,
    /// `BERTH_BACKUP_TRIGGER` (default `manual`).
    pub trigger: Trigger,
    /// `BERTH_BACKUP_LABEL`.
    pub label: Option<String>,
    /// `BERTH_WHO` (default: `user@host` of the pod).
    pub who: String,
    /// `BERTH_RELEASE` and `BERTH_SHA`, when both are set.
    pub release: Option<ReleaseRef>,
    /// `BERTH_RETENTION`: JSON of the retention counts.
    pub retention: Option<Retention>,
    /// `BERTH_DRILL_SMOKE`: JSON array of SQL whose first column must be true.
    pub smoke: Vec<String>,
    /// `BERTH_DRILL_ID`.
    pub drill_id: Option<String>,
    /// The live database (`PG*`).
    pub database: Pg,
    /// The server drills restore into (`DRILL_PG*` when any is set, else `PG*`).
    pub drill_server: Pg,
}

/// One set of libpq variables. The password never leaves the process's
/// environment except into children's.
#[derive(Clone)]
pub struct Pg {
    /// PGHOST.
    pub host: String,
    /// PGPORT (default 5432).
    pub port: u16,
    /// PGUSER.
    pub user: String,
    /// PGPASSWORD, if any.
    pub password: Option<String>,
    /// PGDATABASE.
    pub dbname: String,
}

impl std::fmt::Debug for Pg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}@{}:{}/{}",
            self.user, self.host, self.port, self.dbname
        )
    }
}

impl Pg {
    /// A tokio-postgres configuration for database `dbname` of this server.
    pub fn config(&self, dbname: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .user(&self.user)
            .dbname(dbname)
            .application_name("berth-agent")
            .connect_timeout(std::time::Duration::from_secs(10));
        if let Some(password) = &self.password {
            config.password(password);
        }
        config
    }

    /// The libpq variables for a child working on `dbname` of this server.
    pub fn child_env(&self, dbname: &str) -> Vec<(&'static str, String)> {
        let mut vars = vec![
            ("PGHOST", self.host.clone()),
            ("PGPORT", self.port.to_string()),
            ("PGUSER", self.user.clone()),
            ("PGDATABASE", dbname.to_owned()),
        ];
        if let Some(password) = &self.password {
            vars.push(("PGPASSWORD", password.clone()));
        }
        vars
    }
}

/// Retention counts as `BERTH_RETENTION` carries them (keys as in berth.yaml).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetentionVar {
    daily: u32,
    weekly: u32,
    monthly: u32,
    manual: u32,
    pre_migrate: u32,
    pre_restore: u32,
}

impl AgentEnv {
    /// Read the environment of this process.
    pub fn from_process(needs_id: bool) -> anyhow::Result<AgentEnv> {
        let vars: BTreeMap<String, String> = std::env::vars().collect();
        AgentEnv::from_vars(&vars, needs_id)
    }

    /// Read the settings from `vars`; `needs_id`: BERTH_BACKUP_ID is
    /// required (verify, restore, drill). Every missing variable is named.
    pub fn from_vars(vars: &BTreeMap<String, String>, needs_id: bool) -> anyhow::Result<AgentEnv> {
        let get = |name: &str| {
            vars.get(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let mut required = vec![
            "BERTH_ENVIRONMENT",
            "BERTH_BACKUP_BUCKET",
            "PGHOST",
            "PGUSER",
            "PGDATABASE",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
        ];
        if needs_id {
            required.push("BERTH_BACKUP_ID");
        }
        let missing: Vec<&str> = required
            .into_iter()
            .filter(|name| get(name).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(input_error(format!(
                "the agent's environment lacks {}; berth's pod templates set them from \
                 berth.yaml, `database.secret` (PG*) and `backups.credentials_secret` (AWS_*)",
                missing.join(", ")
            )));
        }
        let need = |name: &str| get(name).unwrap_or_default();
        let environment = need("BERTH_ENVIRONMENT");
        let prefix = get("BERTH_BACKUP_PREFIX").unwrap_or_else(|| format!("{environment}/"));
        let prefix = if prefix.is_empty() || prefix.ends_with('/') {
            prefix
        } else {
            format!("{prefix}/")
        };
        let backup_id = get("BERTH_BACKUP_ID");
        if let Some(id) = &backup_id {
            layout::check_id(id).map_err(|why| input_error(format!("BERTH_BACKUP_ID: {why}")))?;
        }
        let trigger = match get("BERTH_BACKUP_TRIGGER") {
            None => Trigger::Manual,
            Some(text) => {
                serde_json::from_value(serde_json::Value::String(text.clone())).map_err(|_| {
                    input_error(format!(
                        "BERTH_BACKUP_TRIGGER is {text:?}; use schedule, manual, pre-migrate or \
                         pre-restore"
                    ))
                })?
            }
        };
        let retention = get("BERTH_RETENTION")
            .map(|text| {
                serde_json::from_str::<RetentionVar>(&text).map_err(|e| {
                    input_error(format!(
                        "BERTH_RETENTION is not the retention counts ({e}); give JSON such as \
                         {{\"daily\":7,\"weekly\":4,\"monthly\":6,\"manual\":10,\
                         \"pre_migrate\":10,\"pre_restore\":5}}"
                    ))
                })
            })
            .transpose()?
            .map(|r| Retention {
                daily: r.daily,
                weekly: r.weekly,
                monthly: r.monthly,
                manual: r.manual,
                pre_migrate: r.pre_migrate,
                pre_restore: r.pre_restore,
            });
        let smoke = get("BERTH_DRILL_SMOKE")
            .map(|text| {
                serde_json::from_str::<Vec<String>>(&text).map_err(|e| {
                    input_error(format!(
                        "BERTH_DRILL_SMOKE is not a JSON array of SQL strings ({e})"
                    ))
                })
            })
            .transpose()?
            .unwrap_or_default();
        let drill_id = get("BERTH_DRILL_ID");
        if let Some(id) = &drill_id
            && !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(input_error(format!(
                "BERTH_DRILL_ID {id:?} may hold only letters, digits and dashes"
            )));
        }
        let port = |name: &str| -> anyhow::Result<u16> {
            match get(name) {
                None => Ok(5432),
                Some(text) => text
                    .parse()
                    .map_err(|_| input_error(format!("{name} is {text:?}, not a port number"))),
            }
        };
        let database = Pg {
            host: need("PGHOST"),
            port: port("PGPORT")?,
            user: need("PGUSER"),
            password: get("PGPASSWORD"),
            dbname: need("PGDATABASE"),
        };
        let drill_set = [
            "DRILL_PGHOST",
            "DRILL_PGPORT",
            "DRILL_PGUSER",
            "DRILL_PGPASSWORD",
        ]
        .iter()
        .any(|name| get(name).is_some());
        let drill_server = if drill_set {
            Pg {
                host: get("DRILL_PGHOST").unwrap_or_else(|| database.host.clone()),
                port: port("DRILL_PGPORT")?,
                user: get("DRILL_PGUSER").unwrap_or_else(|| database.user.clone()),
                password: get("DRILL_PGPASSWORD"),
                dbname: get("DRILL_PGDATABASE").unwrap_or_else(|| "postgres".to_owned()),
            }
        } else {
            database.clone()
        };
        let who = get("BERTH_WHO").unwrap_or_else(|| {
            let deployer = crate::identity::Deployer::current();
            format!("{}@{}", deployer.user, deployer.host)
        });
        let release = match (get("BERTH_RELEASE"), get("BERTH_SHA")) {
            (Some(name), Some(sha)) => Some(ReleaseRef { name, sha }),
            _ => None,
        };
        Ok(AgentEnv {
            environment,
            bucket: need("BERTH_BACKUP_BUCKET"),
            prefix,
            endpoint: get("BERTH_BACKUP_ENDPOINT").filter(|_| get("AWS_ENDPOINT_URL").is_none()),
            region: get("BERTH_BACKUP_REGION").filter(|_| get("AWS_REGION").is_none()),
            backup_id,
            trigger,
            label: get("BERTH_BACKUP_LABEL"),
            who,
            release,
            retention,
            smoke,
            drill_id,
            database,
            drill_server,
        })
    }

    /// The backup id BERTH_BACKUP_ID names (checked present by `from_vars`).
    pub fn id(&self) -> anyhow::Result<&str> {
        self.backup_id
            .as_deref()
            .ok_or_else(|| input_error("set BERTH_BACKUP_ID to the backup to work on"))
    }

    /// The environment's backup store, checked to exist and let the
    /// credentials in (an input error otherwise).
    pub async fn store(&self) -> anyhow::Result<BackupStore> {
        let store = Store::connect(
            SETTINGS,
            self.endpoint.as_deref(),
            self.region.as_deref(),
            &self.bucket,
            None,
        )
        .await
        .context("connecting to the backup bucket")?;
        store.check().await?;
        Ok(BackupStore {
            store,
            layout: Layout {
                prefix: self.prefix.clone(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::exit_code_number;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const BASE: &[(&str, &str)] = &[
        ("BERTH_ENVIRONMENT", "staging"),
        ("BERTH_BACKUP_BUCKET", "b"),
        ("PGHOST", "db"),
        ("PGUSER", "app"),
        ("PGDATABASE", "app"),
        ("PGPASSWORD", "secret"),
        ("AWS_ACCESS_KEY_ID", "id"),
        ("AWS_SECRET_ACCESS_KEY", "key"),
    ];

    #[test]
    fn missing_variables_are_named_and_exit_2() {
        let error = AgentEnv::from_vars(&vars(&[("PGHOST", "db")]), true).unwrap_err();
        let text = error.to_string();
        for name in [
            "BERTH_ENVIRONMENT",
            "PGUSER",
            "AWS_SECRET_ACCESS_KEY",
            "BERTH_BACKUP_ID",
        ] {
            assert!(text.contains(name), "{text}");
        }
        assert!(!text.contains("PGHOST,"), "{text}");
        assert_eq!(exit_code_number(&error), 2);
    }

    #[test]
    fn defaults_and_drill_fallback() {
        let env = AgentEnv::from_vars(&vars(BASE), false).unwrap();
        assert_eq!(env.prefix, "staging/");
        assert_eq!(env.trigger, Trigger::Manual);
        assert_eq!(env.database.port, 5432);
        assert_eq!(env.drill_server.host, "db");
        assert!(!format!("{env:?}").contains("secret"));
        let mut with_drill = vars(BASE);
        with_drill.insert("DRILL_PGHOST".into(), "scratch".into());
        with_drill.insert(
            "BERTH_RETENTION".into(),
            r#"{"daily":7,"weekly":4,"monthly":6,"manual":10,"pre_migrate":10,"pre_restore":5}"#
                .into(),
        );
        let env = AgentEnv::from_vars(&with_drill, false).unwrap();
        assert_eq!(env.drill_server.host, "scratch");
        assert_eq!(env.drill_server.password, None);
        assert_eq!(env.retention.unwrap().weekly, 4);
    }

    #[test]
    fn malformed_values_are_input_errors() {
        for (name, value) in [
            ("BERTH_BACKUP_ID", "../x"),
            ("BERTH_BACKUP_TRIGGER", "hourly"),
            ("BERTH_RETENTION", "{\"daily\":7}"),
            ("BERTH_DRILL_SMOKE", "select 1"),
            ("PGPORT", "db"),
        ] {
            let mut bad = vars(BASE);
            bad.insert(name.into(), value.into());
            let error = AgentEnv::from_vars(&bad, false).unwrap_err();
            assert!(error.to_string().contains(name), "{error}");
            assert_eq!(exit_code_number(&error), 2);
        }
    }
}
