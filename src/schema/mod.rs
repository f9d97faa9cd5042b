//! Schema rollback (docs/rollback.md): what a deploy records of its
//! migrations, and how `berth rollback` brings the database schema back to
//! the target release's before it re-applies that release's objects.
//!
//! The framework's own tool does the work, in the **newer** release's
//! migration image (the one that still has the migration files), through an
//! [`adapter::Adapter`]: Django is built; other frameworks get a clear
//! message and a rollback of the code alone.

pub mod adapter;
pub mod django;
pub mod jobs;
pub mod plan;
pub mod record;
pub mod unapply;
