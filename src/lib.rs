//! berth deploys web applications to Kubernetes by git SHA and runs the
//! operations around a deploy. The binary is a thin wrapper around [`run`].

pub mod assets;
pub mod backup;
pub mod cache_dir;
pub mod cli;
pub mod cluster;
pub mod commands;
pub mod commit;
pub mod config;
pub mod confirm;
pub mod duration;
pub mod error;
pub mod github;
pub mod hooks;
pub mod identity;
pub mod image_ref;
pub mod interrupt;
pub mod local_time;
pub mod logging;
pub mod maintenance;
pub mod migrate;
pub mod net;
pub mod output;
pub mod pipeline;
pub mod program;
pub mod progress;
#[cfg(test)]
mod properties;
pub mod registry;
pub mod render;
pub mod render_cache;
pub mod rollout;
pub mod s3;
pub mod schema;
pub mod stdout;
pub mod style;
pub mod terminal;
pub mod version;
pub mod wait;

pub use commands::run;
