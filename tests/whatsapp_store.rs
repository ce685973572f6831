//! WhatsApp tables (migration 0003) on SQLite, and on PostgreSQL when `KAV_TEST_POSTGRES_URL` is
//! set (`scripts/ci-postgres.sh`; each run gets its own schema, dropped afterwards).

use kav::store::Store;
use kav::store::whatsapp::{ConversationKey, InboxOutcome, conversation_id};

mod backends;
use backends::backends;

#[tokio::test]
async fn inbox_dedups_claims_with_a_lease_and_serialises_a_conversation() {
    for b in backends().await {
        let store = Store::connect(&b.url).await.unwrap();
        let n = b.name;
        assert!(
            store
                .whatsapp_enqueue("msg:A", "meta", "biz", "conv1", "{}", 1_000)
                .await
                .unwrap()
        );
        for _ in 0..3 {
            assert!(
                !store
                    .whatsapp_enqueue("msg:A", "meta", "biz", "conv1", "{}", 1_001)
                    .await
                    .unwrap(),
                "{n}: duplicate"
            );
        }
        store
            .whatsapp_enqueue("msg:B", "meta", "biz", "conv1", "{}", 1_002)
            .await
            .unwrap();
        store
            .whatsapp_enqueue("msg:C", "meta", "biz", "conv2", "{}", 1_003)
            .await
            .unwrap();
        let a = store
            .whatsapp_claim(2_000, 10_000, 5)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((a.id.as_str(), a.attempts), ("msg:A", 1), "{n}");
        // B is the same conversation as the claimed A: C goes first.
        let c = store
            .whatsapp_claim(2_001, 10_000, 5)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(c.id, "msg:C", "{n}");
        assert!(
            store
                .whatsapp_claim(2_002, 10_000, 5)
                .await
                .unwrap()
                .is_none(),
            "{n}"
        );
        store
            .whatsapp_finish("msg:C", InboxOutcome::Done, 2_003)
            .await
            .unwrap();
        // A's worker died: after the lease A is claimed again (attempt 2).
        let again = store
            .whatsapp_claim(20_000, 10_000, 5)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((again.id.as_str(), again.attempts), ("msg:A", 2), "{n}");
        store
            .whatsapp_finish("msg:A", InboxOutcome::Done, 20_001)
            .await
            .unwrap();
        let b2 = store
            .whatsapp_claim(20_002, 10_000, 5)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(b2.id, "msg:B", "{n}");
        store
            .whatsapp_finish(
                "msg:B",
                InboxOutcome::Retry {
                    error: "throttled",
                    not_before_ms: 21_000,
                },
                20_003,
            )
            .await
            .unwrap();
        assert!(
            store
                .whatsapp_claim(20_004, 10_000, 5)
                .await
                .unwrap()
                .is_none(),
            "{n}: backoff"
        );
        let b3 = store
            .whatsapp_claim(21_000, 10_000, 5)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((b3.id.as_str(), b3.attempts), ("msg:B", 2), "{n}");
        store
            .whatsapp_finish("msg:B", InboxOutcome::Failed("gave up"), 20_005)
            .await
            .unwrap();
        assert_eq!(
            store.whatsapp_inbox_counts().await.unwrap(),
            vec![("done".to_string(), 2), ("failed".to_string(), 1)],
            "{n}"
        );
        // Done rows still deduplicate (Meta retries for 7 days).
        assert!(
            !store
                .whatsapp_enqueue("msg:A", "meta", "biz", "conv1", "{}", 30_000)
                .await
                .unwrap()
        );
        drop(store);
        b.cleanup().await;
    }
}

#[tokio::test]
async fn conversations_history_outbound_and_statuses() {
    for b in backends().await {
        let store = Store::connect(&b.url).await.unwrap();
        let n = b.name;
        let key = ConversationKey {
            business_id: "biz",
            customer_key: "16505551234",
            customer_phone: Some("16505551234"),
            customer_user_id: None,
            profile_name: Some("Sheena"),
            channel: "whatsapp",
        };
        let conv = store
            .whatsapp_touch_conversation(&key, 1_000)
            .await
            .unwrap();
        assert_eq!(conv, conversation_id("biz", "16505551234"));
        assert_eq!(
            store
                .whatsapp_touch_conversation(&key, 2_000)
                .await
                .unwrap(),
            conv
        );
        for i in 0..12i64 {
            let role = if i % 2 == 0 { "user" } else { "assistant" };
            let reply_to = (role == "assistant").then(|| format!("w{}", i - 1));
            assert!(
                store
                    .whatsapp_append_message(
                        &format!("m{i:02}"),
                        &conv,
                        "biz",
                        "16505551234",
                        role,
                        &format!("text {i}"),
                        1_000 + i,
                        None,
                        reply_to.as_deref(),
                    )
                    .await
                    .unwrap()
            );
        }
        // A second reply to the same inbound message is refused by the unique index.
        assert!(
            !store
                .whatsapp_append_message(
                    "other",
                    &conv,
                    "biz",
                    "16505551234",
                    "assistant",
                    "dup",
                    5_000,
                    None,
                    Some("w0"),
                )
                .await
                .unwrap(),
            "{n}"
        );
        assert_eq!(
            store.whatsapp_reply_for("w0").await.unwrap().as_deref(),
            Some("text 1")
        );
        // Written in the same millisecond: still in write order.
        for i in 0..3 {
            store
                .whatsapp_append_message(
                    &format!("z{i}"),
                    "conv-same-ms",
                    "biz",
                    "k",
                    "user",
                    &format!("same {i}"),
                    7_000,
                    None,
                    None,
                )
                .await
                .unwrap();
        }
        let same: Vec<String> = store
            .whatsapp_history("conv-same-ms", 10)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.text)
            .collect();
        assert_eq!(same, vec!["same 0", "same 1", "same 2"], "{n}");
        let history = store.whatsapp_history(&conv, 10).await.unwrap();
        assert_eq!(history.len(), 10, "{n}");
        assert_eq!(history[0].text, "text 2");
        assert_eq!(history[9].text, "text 11");
        let list = store.whatsapp_conversations(10).await.unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].message_count, 12, "{n}");
        assert_eq!(list[0].last_message.as_deref(), Some("text 11"));

        // Outbound: pending → accepted → statuses in any order, never backwards.
        let row = store
            .whatsapp_outbound_begin("w0:0", &conv, "biz", "16505551234", "{}", 3_000)
            .await
            .unwrap();
        assert_eq!(row.status.as_str(), "pending");
        store
            .whatsapp_outbound_result("w0:0", "{}", Ok("wamid.X"), 3_001)
            .await
            .unwrap();
        let again = store
            .whatsapp_outbound_begin("w0:0", &conv, "biz", "16505551234", "{}", 3_002)
            .await
            .unwrap();
        assert_eq!(
            again.status.as_str(),
            "accepted",
            "{n}: begin is idempotent"
        );
        for (status, expect) in [
            ("delivered", "delivered"),
            ("sent", "delivered"),
            ("read", "read"),
            ("delivered", "read"),
            ("played", "played"),
        ] {
            let now = store
                .whatsapp_apply_status("wamid.X", status, None, None, 4_000)
                .await
                .unwrap();
            assert_eq!(now.as_deref(), Some(expect), "{n}: after {status}");
        }
        let failed = store
            .whatsapp_apply_status(
                "wamid.X",
                "failed",
                Some(131026),
                Some("undeliverable"),
                5_000,
            )
            .await
            .unwrap();
        assert_eq!(failed.as_deref(), Some("played"), "{n}");
        let row = store.whatsapp_outbound("w0:0").await.unwrap().unwrap();
        assert_eq!(row.error_code, Some(131026), "{n}");
        assert_eq!(
            store
                .whatsapp_apply_status("wamid.unknown", "read", None, None, 1)
                .await
                .unwrap(),
            None
        );
        let hist = store.whatsapp_status_history("wamid.X").await.unwrap();
        assert_eq!(hist.len(), 5, "{n}: {hist:?}");

        assert!(store.whatsapp_delete_conversation(&conv).await.unwrap());
        assert!(!store.whatsapp_delete_conversation(&conv).await.unwrap());
        assert!(store.whatsapp_history(&conv, 10).await.unwrap().is_empty());
        drop(store);
        b.cleanup().await;
    }
}
