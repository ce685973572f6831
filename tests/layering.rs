//! The layering rules of the rooms (README, Architecture → Code map), checked on the source: which
//! room may name which with `crate::…`. A new import that breaks a rule fails here with the file
//! and line, instead of surfacing later as a cycle.

use std::path::{Path, PathBuf};

/// A `crate::<room>` reference found in `src/<file>` at `line`.
struct Import {
    file: String,
    line: usize,
    target: String,
    in_tests: bool,
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rs_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn imports() -> Vec<Import> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rs_files(&src, &mut files);
    let mut found = Vec::new();
    for path in files {
        let file = path
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let text = std::fs::read_to_string(&path).unwrap();
        // A `tests.rs` beside a module is its `#[cfg(test)] mod tests;`.
        let mut in_tests = file.ends_with("/tests.rs");
        for (i, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("#[cfg(test)]") {
                in_tests = true;
            }
            let code = line.split("//").next().unwrap_or("");
            for (at, _) in code.match_indices("crate::") {
                let rest = &code[at + "crate::".len()..];
                let target: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                    .collect();
                found.push(Import {
                    file: file.clone(),
                    line: i + 1,
                    target: target.trim_end_matches(':').to_string(),
                    in_tests,
                });
            }
        }
    }
    assert!(
        found.len() > 100,
        "the scan found too few imports: {}",
        found.len()
    );
    found
}

fn room(file: &str) -> &str {
    file.split('/').next().unwrap().trim_end_matches(".rs")
}

fn names(import: &Import, room: &str) -> bool {
    import.target == room || import.target.starts_with(&format!("{room}::"))
}

/// Every import in `files` (selected by `from`) that names one of `forbidden`.
fn violations(from: impl Fn(&str) -> bool, forbidden: &[&str]) -> Vec<String> {
    imports()
        .into_iter()
        .filter(|i| from(&i.file))
        .filter(|i| forbidden.iter().any(|r| names(i, r)))
        .map(|i| format!("src/{}:{} uses crate::{}", i.file, i.line, i.target))
        .collect()
}

#[test]
fn the_voice_engine_imports_no_shell() {
    // Its settings live in `voice/config.rs`; `app` converts `Config` into `SessionConfig`.
    let bad = violations(
        |f| room(f) == "voice",
        &[
            "providers",
            "app",
            "agent",
            "booking",
            "channels",
            "server",
            "store",
            "caller",
            "metrics",
            "config",
            "testing",
        ],
    );
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
fn the_booking_rules_are_pure() {
    let rules = [
        "booking/policy.rs",
        "booking/parse.rs",
        "booking/guard.rs",
        "booking/pii.rs",
    ];
    let bad = violations(
        |f| rules.contains(&f),
        &[
            "providers",
            "app",
            "agent",
            "channels",
            "server",
            "store",
            "caller",
            "metrics",
            "config",
            "testing",
        ],
    );
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
fn agents_use_ports_not_provider_clients() {
    let clients = [
        "providers::google",
        "providers::openai",
        "providers::whisper",
        "providers::espeak",
        "providers::sim",
        "providers::audio_file",
    ];
    let mut forbidden = vec!["app", "channels", "server", "caller"];
    forbidden.extend(clients);
    let bad = violations(|f| room(f) == "agent", &forbidden);
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
fn providers_know_nothing_of_their_users() {
    let bad = violations(
        |f| room(f) == "providers",
        &[
            "app", "agent", "booking", "channels", "server", "store", "caller",
        ],
    );
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
fn only_the_binary_uses_the_composition_root() {
    let bad = violations(|f| room(f) != "app" && f != "main.rs", &["app"]);
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
fn the_store_and_server_do_not_build_parts() {
    let bad = violations(
        |f| matches!(room(f), "store" | "server"),
        &["app", "agent", "providers", "caller", "testing"],
    );
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
fn fakes_are_used_only_by_test_code() {
    let bad: Vec<String> = imports()
        .into_iter()
        .filter(|i| room(&i.file) != "testing" && names(i, "testing") && !i.in_tests)
        .map(|i| format!("src/{}:{} uses crate::{}", i.file, i.line, i.target))
        .collect();
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
fn no_customer_channel_names_the_staff_room() {
    // The staff tools are reached from the console only (`src/staff/mod.rs`): the channels, the
    // customer agents, the engine and the providers never name them.
    let bad = violations(
        |f| {
            matches!(
                room(f),
                "channels" | "agent" | "voice" | "providers" | "booking"
            )
        },
        &["staff"],
    );
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
fn booking_does_not_reach_back_into_its_users() {
    // The outbox delivers through `booking::outbox::OutboxPorts`, which the agent's runtime
    // implements: booking → agent would close a circle (agent → booking).
    let bad = violations(
        |f| room(f) == "booking",
        &["agent", "app", "channels", "server", "caller", "testing"],
    );
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
fn the_store_knows_no_channel() {
    // Shared helpers (the hex SHA-256 in `crate::hash`) live in leaves, not in a channel.
    let bad = violations(|f| room(f) == "store", &["channels"]);
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
fn the_hash_helper_is_a_leaf() {
    let bad: Vec<String> = imports()
        .into_iter()
        .filter(|i| i.file == "hash.rs")
        .map(|i| format!("src/{}:{} uses crate::{}", i.file, i.line, i.target))
        .collect();
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
fn the_only_agents_outside_the_agent_room_are_simulations() {
    // One LLM agent (`agent/llm.rs`) over the chat client: providers offer clients, not agents.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/providers");
    let mut files = Vec::new();
    rs_files(&src, &mut files);
    let bad: Vec<String> = files
        .iter()
        .filter(|p| !p.ends_with("sim.rs"))
        .filter(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .contains("impl Agent for")
        })
        .map(|p| p.display().to_string())
        .collect();
    assert!(bad.is_empty(), "{bad:#?}");
}
