//! The one way customer identifiers (phone numbers) leave the process in traces and logs: a short
//! SHA-256 of the digits, so the same phone written `+972 50-123 4567` or `972501234567` gives the
//! same token and the number itself cannot be read back.

use sha2::{Digest, Sha256};

/// `sha256:<12 hex>` of the digits of `phone`.
pub fn hash_phone(phone: &str) -> String {
    let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
    let hash = Sha256::digest(digits.as_bytes());
    let hex: String = hash.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// A phone for a log line: as is when the business opted into logging PII, else [`hash_phone`].
pub fn log_id(phone: &str, log_pii: bool) -> String {
    if log_pii {
        phone.to_string()
    } else {
        hash_phone(phone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_phone_same_token_and_digits_hidden() {
        let a = hash_phone("+972 50-123 4567");
        assert_eq!(a, hash_phone("whatsapp:972501234567"));
        assert!(a.starts_with("sha256:") && a.len() == "sha256:".len() + 12);
        assert!(!a.contains("1234567"));
        assert_ne!(a, hash_phone("+972501234568"));
        assert_eq!(log_id("16505551234", true), "16505551234");
        assert_eq!(log_id("16505551234", false), hash_phone("16505551234"));
    }
}
