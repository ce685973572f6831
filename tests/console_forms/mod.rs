//! Reading the console's HTML forms and cookies from a test client (shared by `tests/console.rs`
//! and `tests/staff_agent.rs`).

/// The `value` of the form input named `name` (e.g. the hidden `csrf` field).
pub fn form_value<'a>(html: &'a str, name: &str) -> Option<&'a str> {
    let needle = format!("name=\"{name}\" value=\"");
    let at = html.find(&needle)? + needle.len();
    html[at..].split('"').next()
}

/// The value a response sets for cookie `name`.
pub fn set_cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap_or("").to_string())
}
