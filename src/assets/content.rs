//! What each file is served with: Content-Type from its extension,
//! Cache-Control from whether its name carries a content hash, and whether
//! a precompressed variant is worth uploading.

/// The Content-Type of a key, from its extension; text types say UTF-8.
pub fn content_type(key: &str) -> String {
    let mime = mime_guess::from_path(key).first_or_octet_stream();
    let text = mime.type_() == mime_guess::mime::TEXT
        || matches!(
            mime.essence_str(),
            "application/javascript" | "application/json" | "image/svg+xml" | "application/xml"
        );
    if text && mime.get_param("charset").is_none() {
        format!("{}; charset=utf-8", mime.essence_str())
    } else {
        mime.essence_str().to_owned()
    }
}

/// Whether the file name carries a content hash, as bundlers write them:
/// `app.3f2a9c1e.js`, `main-5d41402abc4b2a76.css` (hex, 8 or more digits) or
/// `index-BkZ3a9xQ.js` (vite's 8 base64url characters, mixed case and a digit).
/// Such a file never changes under its name, so it may be cached forever.
pub fn has_content_hash(key: &str) -> bool {
    let name = key.rsplit('/').next().unwrap_or(key);
    let stem = name.rsplit_once('.').map_or(name, |(stem, _)| stem);
    let mut tokens = stem.split(['.', '-', '_']);
    // A name that is only a hash (`5d41402abc4b2a76.js`) needs a longer one.
    let first = tokens.next().unwrap_or_default();
    (first.len() >= 16 && is_hex_hash(first))
        || tokens.any(|token| is_hex_hash(token) || is_vite_hash(token))
}

/// 8 or more hex digits, at least one of them a decimal digit.
fn is_hex_hash(token: &str) -> bool {
    token.len() >= 8
        && token.chars().all(|c| c.is_ascii_hexdigit())
        && token.chars().any(|c| c.is_ascii_digit())
}

/// Exactly 8 ASCII letters and digits with upper case, lower case and a digit.
fn is_vite_hash(token: &str) -> bool {
    token.len() == 8
        && token.chars().all(|c| c.is_ascii_alphanumeric())
        && token.chars().any(|c| c.is_ascii_uppercase())
        && token.chars().any(|c| c.is_ascii_lowercase())
        && token.chars().any(|c| c.is_ascii_digit())
}

/// Whether a precompressed variant of this file is worth uploading: a text
/// format (already-compressed images, fonts and archives are not) of at least 1 KiB.
pub fn compressible(key: &str, size: u64) -> bool {
    const TEXT_EXTENSIONS: &[&str] = &[
        "js", "mjs", "cjs", "css", "html", "htm", "json", "map", "svg", "txt", "xml", "wasm",
        "ttf", "otf", "eot", "ico", "csv", "md",
    ];
    size >= 1024
        && key
            .rsplit_once('.')
            .is_some_and(|(_, ext)| TEXT_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_come_from_extensions() {
        assert_eq!(
            content_type("static/app.js"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type("static/app.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("a/logo.svg"), "image/svg+xml; charset=utf-8");
        assert_eq!(content_type("a/logo.png"), "image/png");
        assert_eq!(content_type("fonts/x.woff2"), "font/woff2");
        assert_eq!(content_type("data.json"), "application/json; charset=utf-8");
        assert_eq!(content_type("LICENSE"), "application/octet-stream");
    }

    #[test]
    fn content_hashed_names_are_recognised() {
        for hashed in [
            "static/app.3f2a9c1e.js",
            "main-5d41402abc4b2a76.css",
            "assets/index-BkZ3a9xQ.js",
            "chunk.0123abcd.chunk.js",
            "img/logo_9f86d081884c7d65.png",
            "js/5d41402abc4b2a76.js",
        ] {
            assert!(has_content_hash(hashed), "{hashed}");
        }
        for plain in [
            "static/app.js",
            "favicon.ico",
            "material2023.css",
            "bootstrap-reboot.min.css",
            "deadbeef.js",
            "fonts/Roboto-Regular.woff2",
            "a/abcdefgh.js",
        ] {
            assert!(!has_content_hash(plain), "{plain}");
        }
    }

    #[test]
    fn only_text_worth_compressing_gets_variants() {
        assert!(compressible("app.js", 4096));
        assert!(compressible("style.CSS", 4096));
        assert!(!compressible("app.js", 100));
        assert!(!compressible("photo.jpg", 1 << 20));
        assert!(!compressible("font.woff2", 1 << 20));
    }
}
