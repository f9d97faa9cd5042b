//! Static assets at a version SHA: where they come from (an OCI image, a
//! local directory, a build bucket), the engine that syncs them to the
//! environment's bucket, and pruning what no recent release needs.

pub mod content;
pub mod hash_cache;
pub mod image;
pub mod manifest;
pub mod source;
pub mod store;
pub mod sync;
pub mod tree;
pub mod upload;
