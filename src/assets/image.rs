//! The `image` asset source: files at a path inside an OCI image, read
//! straight from the registry.
