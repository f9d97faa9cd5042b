//! Image references as berth compares them: the repository and the tag,
//! read as written.
//!
//! Not `oci_client::Reference`: that normalises (`nginx` becomes
//! `docker.io/library/nginx`), and berth matches the repositories listed in
//! `berth.yaml` against the images in the rendered objects exactly as written.

/// An image reference without its tag and digest: `127.0.0.1:25000/app:v1` →
/// `127.0.0.1:25000/app`, `app@sha256:…` → `app`. A `:` counts as a tag only
/// after the last `/`, so a registry's port stays.
pub fn repository(image: &str) -> &str {
    let without_digest = image.split_once('@').map_or(image, |(name, _)| name);
    let last_part = without_digest.rfind('/').map_or(0, |slash| slash + 1);
    match without_digest[last_part..].find(':') {
        Some(colon) => &without_digest[..last_part + colon],
        None => without_digest,
    }
}

/// The tag of an image reference, digest ignored: `repo:tag@sha256:…` → `tag`.
pub fn tag(image: &str) -> Option<&str> {
    let without_digest = image.split_once('@').map_or(image, |(name, _)| name);
    let repository = repository(without_digest);
    without_digest[repository.len()..].strip_prefix(':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_drop_tag_and_digest_but_keep_ports() {
        let cases = [
            ("nginx", "nginx"),
            ("nginx:1.25", "nginx"),
            ("library/nginx:1.25", "library/nginx"),
            ("127.0.0.1:25000/app", "127.0.0.1:25000/app"),
            ("127.0.0.1:25000/app:tag", "127.0.0.1:25000/app"),
            (
                "localhost:5000/team/app:v1@sha256:abc",
                "localhost:5000/team/app",
            ),
            (
                "registry.example.com/app@sha256:abc",
                "registry.example.com/app",
            ),
        ];
        for (image, expected) in cases {
            assert_eq!(repository(image), expected, "{image}");
        }
    }

    #[test]
    fn a_tag_is_read_past_ports_and_digests() {
        assert_eq!(tag("127.0.0.1:25000/shop/web:abc1234"), Some("abc1234"));
        assert_eq!(
            tag("127.0.0.1:25000/shop/web:abc1234@sha256:0123"),
            Some("abc1234")
        );
        assert_eq!(tag("127.0.0.1:25000/shop/web@sha256:0123"), None);
        assert_eq!(tag("nginx"), None);
    }
}
