//! Which API key is sent where: `KAV_LLM_API_KEY` to any server, `OPENAI_API_KEY` only to
//! OpenAI and Azure OpenAI hosts.

/// The API key for any server.
pub const KAV_API_KEY_ENV: &str = "KAV_LLM_API_KEY";
/// The conventional OpenAI key: sent only to OpenAI and Azure OpenAI hosts, so a key exported for
/// OpenAI never leaks to a self-hosted or third-party server named in `llm.base_url`.
pub const OPENAI_API_KEY_ENV: &str = "OPENAI_API_KEY";

/// Picks the API key for `base_url` from environment variables (`lookup` is `std::env::var`).
pub fn api_key_from_env(base_url: &str, lookup: impl Fn(&str) -> Option<String>) -> Option<String> {
    let non_empty = |var: &str| lookup(var).filter(|v| !v.is_empty());
    if let Some(key) = non_empty(KAV_API_KEY_ENV) {
        return Some(key);
    }
    let host = url::Url::parse(base_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))?;
    let official = host == "api.openai.com" || host.ends_with(".openai.azure.com");
    official.then(|| non_empty(OPENAI_API_KEY_ENV)).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_key_goes_only_to_openai_hosts() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |var: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == var)
                    .map(|(_, v)| v.to_string())
            }
        };
        let openai_only = env(&[("OPENAI_API_KEY", "sk-openai")]);
        assert_eq!(
            api_key_from_env("https://api.openai.com/v1", openai_only).as_deref(),
            Some("sk-openai")
        );
        assert_eq!(
            api_key_from_env("https://res.openai.azure.com", openai_only).as_deref(),
            Some("sk-openai")
        );
        assert_eq!(
            api_key_from_env("http://127.0.0.1:11434/v1", openai_only),
            None
        );
        assert_eq!(
            api_key_from_env("https://llm.example.com/v1", openai_only),
            None
        );
        let both = env(&[("OPENAI_API_KEY", "sk-openai"), ("KAV_LLM_API_KEY", "kav")]);
        assert_eq!(
            api_key_from_env("http://127.0.0.1:8000/v1", both).as_deref(),
            Some("kav")
        );
        assert_eq!(
            api_key_from_env("https://api.openai.com/v1", both).as_deref(),
            Some("kav")
        );
        assert_eq!(
            api_key_from_env("https://api.openai.com/v1", env(&[])),
            None
        );
    }
}
