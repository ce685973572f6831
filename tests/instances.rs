//! Several instances on one database (issue 15): conversation state lives in the database, so two
//! agent runtimes (two "instances", each with its own store pool) that alternate the messages of
//! one conversation complete the booking as one instance would. On SQLite always, on PostgreSQL
//! too when `KAV_TEST_POSTGRES_URL` is set (`tests/backends`).

mod backends;
mod dialog;

use std::sync::Arc;

use kav::agent::BookingRuntime;
use kav::agent::offline::OfflineBookingAgent;
use kav::config::BookingConfig;
use kav::providers::Channel;
use kav::store::Store;
use kav::testing::clock::ManualClock;
use kav::testing::switchable_sender::SwitchableSender;

const BUSINESS: &str = "biz_escape_tlv";

/// One instance: its own pool on the shared database, its own runtime and agent.
async fn instance(url: &str, clock: &ManualClock) -> (OfflineBookingAgent, Store) {
    let store = Store::connect(url).await.unwrap();
    let rt = BookingRuntime::new(
        store.clone(),
        Arc::new(SwitchableSender::new()),
        clock.clock(),
        BookingConfig::default(),
    );
    (OfflineBookingAgent::new(rt), store)
}

/// A WhatsApp conversation whose messages go to the instances in turn, as the inbox would hand
/// them out. Returns the replies.
async fn converse(
    instances: &[OfflineBookingAgent],
    conversation: &str,
    from: &str,
    language: &str,
    messages: &[&str],
) -> Vec<String> {
    dialog::converse(
        instances,
        Channel::Whatsapp,
        conversation,
        from,
        language,
        messages,
    )
    .await
}

#[tokio::test]
async fn two_instances_alternate_a_conversation_and_book_once() {
    for backend in backends::backends().await {
        let clock = ManualClock::monday_noon();
        let (a, store) = instance(&backend.url, &clock).await;
        let (b, _) = instance(&backend.url, &clock).await;
        let both = [a, b];

        // The example: the second message goes to the other instance.
        let replies = converse(
            &both,
            "wa_inst_en",
            "+972501111111",
            "en-US",
            &["Barcelona, the day after tomorrow at 19:00?", "Noa", "yes"],
        )
        .await;
        let name = backend.name;
        assert!(
            replies[0].contains("name"),
            "{name}: asks for the name: {replies:?}"
        );
        assert!(
            replies[1].contains("Noa") && replies[1].contains("Barcelona"),
            "{name}: the other instance knows date, time and room: {replies:?}"
        );
        assert!(
            !replies[1].to_lowercase().contains("which day"),
            "{name}: {replies:?}"
        );
        assert!(
            replies[2].to_lowercase().contains("booked"),
            "{name}: {replies:?}"
        );

        // Hebrew, three instances in turn (a restart is one more instance).
        let (c, _) = instance(&backend.url, &clock).await;
        let [a, b] = both;
        let three = [b, c, a];
        let replies = converse(
            &three,
            "wa_inst_he",
            "+972502222222",
            "he-IL",
            &["אפשר ברצלונה מחרתיים בשמונה בערב?", "נועה כהן", "כן, בבקשה"],
        )
        .await;
        assert!(replies[0].contains("שם"), "{name}: {replies:?}");
        assert!(
            replies[1].contains("נועה") && replies[1].contains("ברצלונה"),
            "{name}: {replies:?}"
        );
        assert!(replies[2].contains("קבעתי"), "{name}: {replies:?}");

        let appts = store.appointments_for_business(BUSINESS).await.unwrap();
        assert_eq!(appts.len(), 2, "{name}: {appts:#?}");
        let noa = appts
            .iter()
            .find(|a| a.conversation_id == "wa_inst_en")
            .expect("English booking");
        assert_eq!(noa.customer_name, "Noa");
        assert_eq!(noa.customer_phone.as_deref(), Some("+972501111111"));
        let he = appts
            .iter()
            .find(|a| a.conversation_id == "wa_inst_he")
            .expect("Hebrew booking");
        assert_eq!(he.customer_name, "נועה כהן");
        // Wednesday 2026-11-25 at 19:00 and 20:00 Asia/Jerusalem (17:00 and 18:00 UTC).
        let utc = |ms| jiff::Timestamp::from_millisecond(ms).unwrap().to_string();
        assert_eq!(utc(noa.start_ms), "2026-11-25T17:00:00Z", "{name}");
        assert_eq!(utc(he.start_ms), "2026-11-25T18:00:00Z", "{name}");
        backend.cleanup().await;
    }
}

/// A conversation's state survives in the database between turns and is gone once the
/// conversation is deleted through the operator path.
#[tokio::test]
async fn state_is_in_the_database_and_deleted_with_the_conversation() {
    for backend in backends::backends().await {
        let clock = ManualClock::monday_noon();
        let (a, store) = instance(&backend.url, &clock).await;
        converse(
            std::slice::from_ref(&a),
            "wa_inst_del",
            "+972503333333",
            "en-US",
            &["Barcelona tomorrow at 19:00"],
        )
        .await;
        let saved = store
            .conversation_state("wa_inst_del", "offline_dialog")
            .await
            .unwrap()
            .expect("dialog state saved");
        assert_eq!(saved.0, 1, "format version");
        assert!(saved.1.contains("Barcelona"), "{}", saved.1);
        store
            .whatsapp_delete_conversation("wa_inst_del")
            .await
            .unwrap();
        assert!(
            store
                .conversation_state("wa_inst_del", "offline_dialog")
                .await
                .unwrap()
                .is_none()
        );
        backend.cleanup().await;
    }
}
