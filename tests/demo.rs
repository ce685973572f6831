//! The README's main command works: `kav demo` places the whole demo call (greeting, booking
//! request, barge-in, keypad number, confirmation, goodbye) through a real server with espeak-ng
//! speaking and the booking agent over SQLite, and exits 0 only if every step happened and the
//! appointment is in the database. Takes about 35 s of real time (the call runs in real time).

use std::process::Command;

#[test]
fn kav_demo_runs_the_whole_call() {
    let out = Command::new(env!("CARGO_BIN_EXE_kav"))
        .arg("demo")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RUST_LOG", "warn")
        .output()
        .expect("kav binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "kav demo failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("demo ok"), "{stdout}");
    assert!(
        stdout.contains("tts=espeak"),
        "espeak-ng should speak (run scripts/setup.sh): {stdout}"
    );
    for expected in [
        "greeting",
        "digits",
        "0501234567",
        "Thank you, goodbye.",
        // The booking agent booked a real appointment, stored with the typed number ...
        "agent=offline-booking",
        "You're booked for",
        "room room_dubai  name Dana  phone +972501234567  status booked",
        // ... and queued its WhatsApp confirmation in the outbox.
        "outbox: appointment.created confirm:appt_",
        "appointment booked",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
}
