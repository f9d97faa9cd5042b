//! Outgoing connections that need nothing from the system but two text
//! files: host names are resolved in Rust ([`resolver`]: `/etc/hosts`, then
//! the name servers of `/etc/resolv.conf`), never by glibc, whose
//! `getaddrinfo` in a statically linked binary would have to load NSS modules
//! that an empty root (a scratch image, another distribution) lacks; and
//! public TLS endpoints are checked against bundled roots plus the system's
//! ([`tls`]). Every client berth builds (Kubernetes, S3, GitHub, the image
//! registries) goes through here.

pub mod backoff;
pub mod resolver;
pub mod tls;
