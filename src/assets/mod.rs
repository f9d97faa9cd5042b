//! Static assets at a version SHA: where they come from (an OCI image, a
//! local directory, a build bucket) and the engine that syncs them to the
//! environment's bucket.

pub mod image;
