//! Database backups: pg_dump streamed to S3 with a manifest beside each dump,
//! retention, guarded restore and restore drills.
//!
//! The work on the data runs in the cluster, in a pod of berth's own image
//! (the static berth plus the PostgreSQL client) running `berth db agent`:
//! the database port is never exposed and the dump never touches a disk.
//! Commands on the operator's side create those pods, follow them, and read
//! the manifests and drill records the agent writes to the bucket.

pub mod counts;
pub mod drill;
pub mod dump;
pub mod job;
pub mod layout;
pub mod manifest;
pub mod pod_env;
pub mod pods;
pub mod prune;
pub mod restore;
pub mod retention;
pub mod store;
pub mod tools;
pub mod upload;
pub mod verify;
