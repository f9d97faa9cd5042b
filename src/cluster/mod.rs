//! Everything berth does to a cluster through the Kubernetes API: connect,
//! check permissions, lock, apply, and record releases.

pub mod access;
pub mod apply;
pub mod client;
pub mod database;
pub mod exec;
pub mod live;
pub mod lock;
pub mod pods;
pub mod release;
pub mod run_pod;

/// The field manager of every server-side apply berth makes.
pub const FIELD_MANAGER: &str = "berth";
/// Label on every object berth applies.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "berth");
/// Label naming the app and environment an object belongs to (`<app>-<env>`).
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";

/// The instance label value of an environment: `<app>-<env>`.
pub fn instance(app: &str, env: &str) -> String {
    format!("{app}-{env}")
}
