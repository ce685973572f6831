//! `X-Twilio-Signature` validation (pure functions). OWNER: codec helper.

/// base64(HMAC-SHA1(auth_token, url + concat(sorted params as name+value))).
pub fn compute(_auth_token: &str, _url: &str, _params: &[(String, String)]) -> String {
    unimplemented!("codec helper")
}

/// Validates a request signature the way Twilio's SDK does (with and without the default port,
/// sorted params, `bodySHA256` for JSON bodies), comparing in constant time.
pub fn validate(
    _auth_token: &str,
    _url: &str,
    _params: &[(String, String)],
    _signature: &str,
) -> bool {
    unimplemented!("codec helper")
}
