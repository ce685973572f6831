//! `X-Twilio-Signature` validation (pure functions). OWNER: codec helper.
//!
//! Mirrors twilio-python's `RequestValidator` (protocols.md §1.4), because Twilio's own signing is
//! inconsistent about ports and the SDK's tolerance is what the published vectors encode.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{KeyInit, Mac};
use subtle::ConstantTimeEq;

use crate::hash::sha256_hex;

type HmacSha1 = hmac::Hmac<sha1::Sha1>;

/// base64(HMAC-SHA1(auth_token, url + concat(sorted params as name+value))).
///
/// Params are sorted by name, then value (byte order, which is the code-point order Twilio and
/// the SDK use), and exact duplicate pairs count once, as in the SDK.
pub fn compute(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    sorted.sort_unstable();
    sorted.dedup();

    let mut mac = hmac_for(auth_token);
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    BASE64.encode(mac.finalize().into_bytes())
}

fn hmac_for(auth_token: &str) -> HmacSha1 {
    // HMAC takes keys of any length, so this cannot fail; the fallback keeps us panic-free.
    HmacSha1::new_from_slice(auth_token.as_bytes())
        .unwrap_or_else(|_| HmacSha1::new(&Default::default()))
}

/// Validates a request signature the way Twilio's SDK does (with and without the default port,
/// sorted params, `bodySHA256` for JSON bodies), comparing in constant time.
///
/// For form POSTs and GETs. A `bodySHA256` in the URL is not checked here (the SDK doesn't either
/// when given params); use [`validate_with_body`] for JSON bodies.
pub fn validate(auth_token: &str, url: &str, params: &[(String, String)], signature: &str) -> bool {
    let mut ok = subtle::Choice::from(0);
    for candidate in url_candidates(url).iter().flatten() {
        ok |= compute(auth_token, candidate, params)
            .as_bytes()
            .ct_eq(signature.as_bytes());
    }
    ok.into()
}

/// Validates a request with a JSON (non-form) body: the URL alone is signed, and its
/// `bodySHA256` query parameter must equal the lowercase hex SHA-256 of `body`. A URL without
/// `bodySHA256` fails, since nothing would then bind the body to the signature.
pub fn validate_with_body(auth_token: &str, url: &str, body: &[u8], signature: &str) -> bool {
    let Some(expected_hex) = body_sha256_param(url) else {
        return false;
    };
    let actual_hex = sha256_hex(body);
    let body_ok = actual_hex.as_bytes().ct_eq(expected_hex.as_bytes());
    let signature_ok = subtle::Choice::from(u8::from(validate(auth_token, url, &[], signature)));
    (body_ok & signature_ok).into()
}

fn body_sha256_param(url: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "bodySHA256")
        .map(|(_, value)| value.into_owned())
}

/// The URL as given, with the scheme's default port added (when it has no port) and with its
/// port removed (whatever it is: the SDK strips any port, and the vectors rely on that).
fn url_candidates(url: &str) -> [Option<String>; 3] {
    let Some(parts) = split_authority(url) else {
        return [Some(url.to_owned()), None, None];
    };
    let without_port = parts
        .port
        .map(|_| format!("{}{}", parts.before_port, parts.rest));
    let with_port = match parts.port {
        Some(_) => None,
        None => {
            let default = if parts.scheme.eq_ignore_ascii_case("https") {
                443
            } else {
                80
            };
            Some(format!("{}:{default}{}", parts.before_port, parts.rest))
        }
    };
    [Some(url.to_owned()), without_port, with_port]
}

struct UrlParts<'a> {
    scheme: &'a str,
    /// Everything up to the end of the host.
    before_port: &'a str,
    port: Option<&'a str>,
    /// Path, query and fragment.
    rest: &'a str,
}

fn split_authority(url: &str) -> Option<UrlParts<'_>> {
    let (scheme, after_scheme) = url.split_once("://")?;
    let authority_start = scheme.len() + 3;
    let authority_len = after_scheme
        .find(['/', '?', '#'])
        .unwrap_or(after_scheme.len());
    let authority = &after_scheme[..authority_len];
    let host_start = authority.rfind('@').map_or(0, |i| i + 1);
    let host_port = &authority[host_start..];
    // An IPv6 literal contains colons of its own; the port colon comes after `]`.
    let search_from = host_port.rfind(']').unwrap_or(0);
    let port_colon = host_port[search_from..]
        .rfind(':')
        .map(|i| search_from + i)
        .filter(|&i| {
            let port = &host_port[i + 1..];
            !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
        });
    let host_end = authority_start + host_start + port_colon.unwrap_or(host_port.len());
    let authority_end = authority_start + authority_len;
    Some(UrlParts {
        scheme,
        before_port: &url[..host_end],
        port: port_colon.map(|i| &host_port[i + 1..]),
        rest: &url[authority_end..],
    })
}

// ------------------------------------------------------------------ Meta X-Hub-Signature-256

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// `sha256=` + lowercase hex HMAC-SHA256(app_secret, body): Meta's `X-Hub-Signature-256`.
/// `body` must be the raw bytes as received: Meta signs its escaped-unicode serialisation, so
/// re-serialising parsed JSON gives a different signature.
pub fn hub_signature_256(app_secret: &str, body: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut mac = HmacSha256::new_from_slice(app_secret.as_bytes())
        .unwrap_or_else(|_| HmacSha256::new(&Default::default()));
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for byte in digest.iter() {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0F)]));
    }
    out
}

/// Checks an `X-Hub-Signature-256` header value in constant time. An empty secret never
/// validates (it would let anyone sign).
pub fn validate_hub_signature(app_secret: &str, body: &[u8], header: &str) -> bool {
    if app_secret.is_empty() {
        return false;
    }
    let expected = hub_signature_256(app_secret, body);
    // Hex is case-insensitive; Meta sends lowercase, but tolerate uppercase digits.
    let given = header.trim().to_ascii_lowercase();
    expected.as_bytes().ct_eq(given.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_cover_port_forms() {
        let c = url_candidates("https://example.com/a?b=1");
        assert_eq!(c[2].as_deref(), Some("https://example.com:443/a?b=1"));
        assert_eq!(c[1], None);
        let c = url_candidates("http://user:pw@example.com:8080?x");
        assert_eq!(c[1].as_deref(), Some("http://user:pw@example.com?x"));
        assert_eq!(c[2], None);
        let c = url_candidates("https://[::1]:8443/p");
        assert_eq!(c[1].as_deref(), Some("https://[::1]/p"));
        let c = url_candidates("https://[::1]/p");
        assert_eq!(c[2].as_deref(), Some("https://[::1]:443/p"));
        let c = url_candidates("not a url");
        assert_eq!(c, [Some("not a url".to_owned()), None, None]);
    }

    #[test]
    fn body_hash_param_is_found() {
        assert_eq!(
            body_sha256_param("https://x/y?a=1&bodySHA256=abc#frag").as_deref(),
            Some("abc")
        );
        assert_eq!(body_sha256_param("https://x/y?a=1"), None);
        assert_eq!(body_sha256_param("https://x/y"), None);
    }

    #[test]
    fn hub_signature_matches_derived_vectors() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/whatsapp");
        let raw =
            std::fs::read_to_string(format!("{dir}/x_hub_signature_256_vectors_DERIVED.json"))
                .expect("vectors");
        let doc: serde_json::Value = serde_json::from_str(&raw).unwrap();
        let vectors = doc["vectors"].as_array().unwrap();
        assert_eq!(vectors.len(), 3);
        for v in vectors {
            let secret = v["app_secret"].as_str().unwrap();
            let expected = v["x_hub_signature_256"].as_str().unwrap();
            let body: Vec<u8> = if let Some(f) = v["body_file"].as_str() {
                std::fs::read(format!("{dir}/{f}")).unwrap()
            } else if let Some(b) = v["raw_body"].as_str() {
                b.as_bytes().to_vec()
            } else {
                v["raw_body_utf8"].as_str().unwrap().as_bytes().to_vec()
            };
            assert_eq!(super::hub_signature_256(secret, &body), expected);
            assert!(super::validate_hub_signature(secret, &body, expected));
        }
        // The escaped body's signature does not validate the re-serialised UTF-8 body.
        let escaped_sig = vectors[1]["x_hub_signature_256"].as_str().unwrap();
        let utf8 = vectors[2]["raw_body_utf8"].as_str().unwrap().as_bytes();
        assert!(!super::validate_hub_signature(
            "test_app_secret",
            utf8,
            escaped_sig
        ));
        assert!(!super::validate_hub_signature(
            "",
            b"{}",
            &super::hub_signature_256("", b"{}")
        ));
        assert!(!super::validate_hub_signature("test_app_secret", b"{}", ""));
    }
}
