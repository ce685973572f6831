//! Both signature checks (Twilio `X-Twilio-Signature`, Meta `X-Hub-Signature-256`): never panic,
//! the signature we compute is accepted, and an arbitrary header is accepted only if it is that
//! signature.
use arbitrary::{Arbitrary, Unstructured};
use kav::channels::signature::{
    compute, hub_signature_256, validate, validate_hub_signature, validate_with_body,
};

#[derive(Arbitrary, Debug)]
struct Input {
    token: String,
    url: String,
    params: Vec<(String, String)>,
    body: Vec<u8>,
    header: String,
}

/// One fuzz input: the bytes become an [`Input`] the way `libfuzzer-sys` builds one
/// (`arbitrary_take_rest`); bytes that do not make one are skipped.
pub fn run(data: &[u8]) {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let Input {
        token,
        url,
        params,
        body,
        header,
    } = input;
    let good = compute(&token, &url, &params);
    assert!(validate(&token, &url, &params, &good));
    let _ = validate(&token, &url, &params, &header);
    let _ = validate_with_body(&token, &url, &body, &header);
    let hub = hub_signature_256(&token, &body);
    assert_eq!(
        validate_hub_signature(&token, &body, &hub),
        !token.is_empty()
    );
    if validate_hub_signature(&token, &body, &header) {
        assert_eq!(header.trim().to_ascii_lowercase(), hub);
    }
}
