//! Both signature checks (Twilio `X-Twilio-Signature`, Meta `X-Hub-Signature-256`): never panic,
//! the signature we compute is accepted, and an arbitrary header is accepted only if it is that
//! signature.
#![no_main]
use arbitrary::Arbitrary;
use kav::channels::signature::{
    compute, hub_signature_256, validate, validate_hub_signature, validate_with_body,
};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    token: String,
    url: String,
    params: Vec<(String, String)>,
    body: Vec<u8>,
    header: String,
}

fuzz_target!(|input: Input| {
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
});
