//! Pacer unit tests, in virtual time: the lead burst and 20 ms schedule, marks and the final
//! mark, clear, underruns and re-priming, the bounded buffer, the RTT estimate, lost and stale
//! echoes, and the heard-frames count between echoes.

use super::*;

fn drain(p: &mut Pacer, now: Instant) -> Vec<PacerOutput> {
    std::iter::from_fn(|| p.poll(now)).collect()
}

fn frames(out: &[PacerOutput]) -> usize {
    out.iter()
        .filter(|o| matches!(o, PacerOutput::Frame(_)))
        .count()
}

#[test]
fn burst_of_lead_then_one_frame_per_20ms() {
    let t0 = Instant::now();
    let mut p = Pacer::new(1000, 3, 5);
    assert_eq!(p.push(&[0x55; 160 * 40]), 160 * 40);
    assert_eq!(frames(&drain(&mut p, t0)), 3, "lead goes out at once");
    assert_eq!(p.poll_timeout(), Some(t0 + FRAME));
    assert_eq!(
        frames(&drain(&mut p, t0 + FRAME - Duration::from_millis(1))),
        0
    );
    assert_eq!(frames(&drain(&mut p, t0 + FRAME)), 1);
    // A late wake-up while Twilio still has audio catches up on the absolute schedule, never
    // more than the lead ahead of it: the 4 frames sent play until t0 + 80 ms.
    assert_eq!(frames(&drain(&mut p, t0 + FRAME * 3)), 2);
    assert_eq!(p.stats().lead_max_ms, 60);
    assert_eq!(p.stats().priming_frames, 3);
    // The frame due at t0 + 40 ms left 20 ms late (over 5 ms, not over 20 ms).
    assert_eq!((p.stats().late_5ms, p.stats().late_20ms), (1, 0));
    assert_eq!(p.stats().underrun_events, 0);
    // A wake-up after Twilio ran dry (6 frames played by t0 + 120 ms) does not send the whole
    // backlog the old schedule says is due, which would queue 380 ms at Twilio: it re-primes
    // with the lead, and the gap the caller heard (120 → 400 ms) is an underrun.
    assert_eq!(frames(&drain(&mut p, t0 + FRAME * 20)), 3);
    assert_eq!(p.stats().priming_frames, 6);
    assert_eq!(p.stats().underrun_events, 1);
    assert_eq!(p.stats().underrun_ms, 280);
    assert_eq!(p.stats().lead_max_ms, 60);
    assert_eq!(frames(&drain(&mut p, t0 + FRAME * 21)), 1);
    assert_eq!(p.stats().lead_holds, 0);
}

#[test]
fn marks_every_n_frames_and_final_mark_finishes() {
    let t0 = Instant::now();
    let mut p = Pacer::new(1000, 2, 2);
    p.push(&[1; 160 * 4 + 10]);
    p.finish_input();
    let mut all = Vec::new();
    for i in 0..10 {
        all.extend(drain(&mut p, t0 + FRAME * i));
        let marks: Vec<u64> = all
            .iter()
            .filter_map(|o| {
                if let PacerOutput::Mark(id) = o {
                    Some(*id)
                } else {
                    None
                }
            })
            .collect();
        for id in marks {
            p.on_mark(t0, id);
        }
        all.retain(|o| matches!(o, PacerOutput::Frame(_)));
    }
    assert_eq!(p.sent_frames(), 5, "tail padded into a fifth frame");
    assert!(p.is_idle());
}

/// Marks among `out`.
fn mark_ids(out: &[PacerOutput]) -> Vec<u64> {
    out.iter()
        .filter_map(|o| match o {
            PacerOutput::Mark(id) => Some(*id),
            _ => None,
        })
        .collect()
}

#[test]
fn end_known_only_after_the_last_frame_went_out_still_finishes() {
    let t0 = Instant::now();
    // Exactly one mark interval, all of it sent in the priming burst: the interval's mark
    // becomes the final one.
    let mut p = Pacer::new(1000, 5, 5);
    p.push(&[1; 160 * 5]);
    let out = drain(&mut p, t0);
    assert_eq!(frames(&out), 5);
    let ids = mark_ids(&out);
    assert_eq!(ids.len(), 1);
    p.finish_input();
    assert!(
        drain(&mut p, t0).is_empty(),
        "no extra frame for an empty tail"
    );
    assert_eq!(p.on_mark(t0 + FRAME * 5, ids[0]), MarkOutcome::Finished);
    assert!(p.is_idle());

    // Seven frames: the last two after the interval's mark carry none, so the end gets its
    // own mark.
    let mut p = Pacer::new(1000, 5, 5);
    p.push(&[1; 160 * 7]);
    let mut out = Vec::new();
    for i in 0..4 {
        out.extend(drain(&mut p, t0 + FRAME * i));
    }
    assert_eq!(frames(&out), 7);
    let first = mark_ids(&out);
    assert_eq!(first.len(), 1);
    p.finish_input();
    let end = mark_ids(&drain(&mut p, t0 + FRAME * 4));
    assert_eq!(end.len(), 1);
    assert_eq!(p.on_mark(t0 + FRAME * 5, first[0]), MarkOutcome::Played);
    assert!(!p.is_idle(), "two frames not yet confirmed");
    assert_eq!(p.on_mark(t0 + FRAME * 7, end[0]), MarkOutcome::Finished);
    assert!(p.is_idle());
}

#[test]
fn final_mark_reports_finished_and_tail_is_padded_with_silence() {
    let t0 = Instant::now();
    let mut p = Pacer::new(1000, 5, 5);
    p.push(&[7; 100]);
    p.finish_input();
    let out = drain(&mut p, t0);
    let PacerOutput::Frame(f) = out[0] else {
        panic!("{out:?}")
    };
    assert_eq!(&f[..100], &[7; 100][..]);
    assert!(f[100..].iter().all(|b| *b == g711::SILENCE));
    let PacerOutput::Mark(id) = out[1] else {
        panic!("{out:?}")
    };
    assert_eq!(p.on_mark(t0, id), MarkOutcome::Finished);
}

#[test]
fn clear_flushes_and_old_echoes_are_recognised() {
    let t0 = Instant::now();
    let mut p = Pacer::new(1000, 5, 1);
    p.push(&[1; 800]);
    let out = drain(&mut p, t0);
    let ids: Vec<u64> = out
        .iter()
        .filter_map(|o| {
            if let PacerOutput::Mark(id) = o {
                Some(*id)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(p.on_mark(t0, ids[0]), MarkOutcome::Played);
    assert_eq!(p.played_frames(), 1);
    p.clear(t0);
    assert_eq!(p.buffered_bytes(), 0);
    assert_eq!(p.on_mark(t0, ids[1]), MarkOutcome::Flushed);
    assert_eq!(p.on_mark(t0, 999), MarkOutcome::Unknown);
}

#[test]
fn underrun_is_counted_and_playback_reprimes() {
    let t0 = Instant::now();
    let mut p = Pacer::new(1000, 2, 50);
    p.push(&[1; 320]);
    assert_eq!(frames(&drain(&mut p, t0)), 2);
    assert_eq!(frames(&drain(&mut p, t0 + FRAME)), 0);
    assert_eq!(
        p.stats().underrun_events,
        0,
        "Twilio still has a frame to play"
    );
    assert_eq!(
        p.poll_timeout(),
        Some(t0 + FRAME * 2),
        "when Twilio runs dry"
    );
    assert_eq!(frames(&drain(&mut p, t0 + FRAME * 2)), 0);
    assert_eq!(p.stats().underrun_events, 1);
    p.push(&[1; 480]);
    let later = t0 + FRAME * 5;
    assert_eq!(frames(&drain(&mut p, later)), 2, "fresh lead after the gap");
    assert_eq!(p.stats().underrun_ms, 60);
}

#[test]
fn audio_late_within_the_lead_keeps_the_schedule() {
    let t0 = Instant::now();
    let mut p = Pacer::new(1000, 5, 50);
    p.push(&[1; 160 * 2]);
    assert_eq!(frames(&drain(&mut p, t0)), 2, "priming with what there is");
    p.push(&[1; 160 * 10]);
    let t = t0 + Duration::from_millis(30);
    // The rest of the lead goes out at once; no underrun, the anchor stands.
    assert_eq!(frames(&drain(&mut p, t)), 4);
    assert_eq!(p.stats().underrun_events, 0);
    assert_eq!(p.poll_timeout(), Some(t0 + FRAME * 2));
}

#[test]
fn push_is_bounded() {
    let mut p = Pacer::new(100, 2, 5);
    assert_eq!(p.free_bytes(), 800);
    assert_eq!(p.push(&[0; 1000]), 800);
    assert_eq!(p.stats().overflow_bytes, 200);
}

/// Runs a pacer against a peer that echoes each mark `rtt` after its frame is due to finish
/// playing (`None`: never). Returns the send times of all frames.
fn run_with_peer(p: &mut Pacer, t0: Instant, ms: u32, rtt: Option<Duration>) -> Vec<Instant> {
    let mut sent_at = Vec::new();
    let mut echoes: VecDeque<(Instant, u64)> = VecDeque::new();
    let mut now = t0;
    let end = t0 + Duration::from_millis(ms as u64);
    while now < end {
        while echoes.front().is_some_and(|(at, _)| *at <= now) {
            let (_, id) = echoes.pop_front().unwrap();
            p.on_mark(now, id);
        }
        while let Some(out) = p.poll(now) {
            match out {
                PacerOutput::Frame(_) => sent_at.push(now),
                PacerOutput::Mark(id) => {
                    if let Some(rtt) = rtt {
                        let due = p.marks.back().unwrap().due;
                        echoes.push_back((due + rtt, id));
                    }
                }
                PacerOutput::Finished => {}
            }
        }
        now += Duration::from_millis(1);
    }
    sent_at
}

#[test]
fn rtt_does_not_slow_the_schedule() {
    for rtt_ms in [0u64, 100, 200, 300, 450] {
        let t0 = Instant::now();
        let mut p = Pacer::new(10_000, 5, 5);
        p.push(&[1; 160 * 300]); // 6 s
        let sent = run_with_peer(&mut p, t0, 5_000, Some(Duration::from_millis(rtt_ms)));
        assert_eq!(p.stats().lead_holds, 0, "rtt {rtt_ms}");
        // Priming burst of 5 at t0, then exactly one frame per 20 ms.
        assert!(sent[..5].iter().all(|t| *t == t0));
        for (i, at) in sent.iter().enumerate().skip(5) {
            assert_eq!(*at, t0 + FRAME * (i as u32 - 4), "rtt {rtt_ms} frame {i}");
        }
        assert_eq!(p.stats().srtt_ms, rtt_ms, "estimate from echoes");
        assert_eq!(
            p.stats().late_5ms,
            0,
            "rtt {rtt_ms}: every frame left on time"
        );
        assert_eq!(p.stats().lead_max_ms, 100);
    }
}

#[test]
fn rtt_estimator_follows_rfc6298() {
    let mut r = RttEstimator::default();
    assert_eq!(r.srtt(), None);
    r.sample(Duration::from_millis(200));
    assert_eq!(r.srtt(), Some(Duration::from_millis(200)));
    assert_eq!(r.rttvar(), Duration::from_millis(100));
    r.sample(Duration::from_millis(280));
    // RTTVAR = 3/4·100 + 1/4·|200−280| = 95; SRTT = 7/8·200 + 1/8·280 = 210.
    assert_eq!(r.rttvar(), Duration::from_millis(95));
    assert_eq!(r.srtt(), Some(Duration::from_millis(210)));
}

#[test]
fn a_dead_peer_gets_at_most_the_cap_and_playback_never_stalls_forever() {
    let t0 = Instant::now();
    let limits = PacerLimits::default();
    let mut p = Pacer::with_limits(10_000, 5, 5, limits);
    p.push(&[1; 160 * 500]);
    let sent = run_with_peer(&mut p, t0, 1_500, None);
    let cap_frames = (limits.cap_max.as_millis() / 20) as usize;
    assert_eq!(
        sent.len(),
        cap_frames,
        "no echo: at most cap_max unconfirmed"
    );
    assert_eq!(p.stats().lead_holds, 1);
    // Echoes never come: after the echo timeout the schedule stands in and playback goes on.
    let more = run_with_peer(&mut p, t0 + Duration::from_millis(1_500), 3_000, None);
    assert!(!more.is_empty(), "playback resumed");
    assert!(p.stats().missing_echoes > 0);
}

#[test]
fn a_hold_released_after_twilio_ran_dry_sends_only_the_lead() {
    // The `call_session` fuzzer's case: echoes stop, the cap holds playout, Twilio plays
    // everything it has; then the late echoes all arrive at once.
    let t0 = Instant::now();
    let limits = PacerLimits {
        cap_max: Duration::from_millis(200),
        ..PacerLimits::default()
    };
    let mut p = Pacer::with_limits(10_000, 5, 5, limits);
    p.push(&[1; 160 * 100]);
    let mut marks = Vec::new();
    for ms in (0..=600).step_by(20) {
        for out in drain(&mut p, t0 + Duration::from_millis(ms)) {
            if let PacerOutput::Mark(id) = out {
                marks.push(id);
            }
        }
    }
    assert_eq!(p.sent_frames(), 10, "held at the 200 ms cap");
    assert_eq!(p.stats().lead_holds, 1);
    let now = t0 + Duration::from_millis(600);
    for id in marks {
        p.on_mark(now, id);
    }
    // Twilio went dry at t0 + 200 ms: a fresh lead of 5 frames, not 20 frames of backlog.
    assert_eq!(frames(&drain(&mut p, now)), 5);
    assert_eq!(p.stats().underrun_events, 1);
    assert_eq!(p.stats().underrun_ms, 400);
    assert_eq!(frames(&drain(&mut p, now + FRAME)), 1);
}

#[test]
fn out_of_order_unknown_and_very_late_echoes_are_counted_not_trusted() {
    let t0 = Instant::now();
    let mut p = Pacer::new(1000, 2, 1);
    p.push(&[1; 160 * 4]);
    let ids: Vec<u64> = drain(&mut p, t0)
        .iter()
        .filter_map(|o| match o {
            PacerOutput::Mark(id) => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(ids.len(), 2);
    let echo_at = t0 + Duration::from_millis(140);
    assert_eq!(p.on_mark(echo_at, ids[1]), MarkOutcome::Played);
    assert_eq!(
        p.played_frames(),
        2,
        "a later echo confirms the earlier frames too"
    );
    assert_eq!(p.on_mark(echo_at, ids[0]), MarkOutcome::Stale);
    assert_eq!(p.on_mark(echo_at, 77), MarkOutcome::Unknown);
    assert_eq!(p.stats().stale_echoes, 1);
    assert_eq!(p.stats().srtt_ms, 100, "one sample: 140 − due 40");
    // A mark whose echo is 10 s late has timed out by then and is not an RTT sample.
    let out = drain(&mut p, t0 + FRAME * 2);
    let Some(PacerOutput::Mark(late)) = out
        .iter()
        .rev()
        .find(|o| matches!(o, PacerOutput::Mark(_)))
        .copied()
    else {
        panic!("{out:?}")
    };
    drain(&mut p, t0 + Duration::from_secs(10));
    assert_eq!(p.stats().missing_echoes, 2);
    assert_eq!(
        p.on_mark(t0 + Duration::from_secs(10), late),
        MarkOutcome::Stale
    );
    assert_eq!(p.stats().srtt_ms, 100);
}

#[test]
fn a_lost_final_echo_finishes_the_reply_after_the_timeout() {
    let t0 = Instant::now();
    let mut p = Pacer::new(1000, 5, 5);
    p.push(&[7; 320]);
    p.finish_input();
    assert_eq!(frames(&drain(&mut p, t0)), 2);
    let deadline = p.poll_timeout().expect("waits for the final echo");
    assert_eq!(
        deadline,
        t0 + FRAME * 2 + PacerLimits::default().echo_timeout
    );
    assert_eq!(p.poll(deadline - Duration::from_millis(1)), None);
    assert_eq!(p.poll(deadline), Some(PacerOutput::Finished));
    assert!(p.is_idle());
    assert_eq!(p.played_frames(), 2);
}

#[test]
fn heard_frames_follow_the_schedule_between_echoes() {
    let t0 = Instant::now();
    let mut p = Pacer::new(1000, 5, 5);
    p.push(&[1; 160 * 20]);
    drain(&mut p, t0);
    assert_eq!(p.heard_frames(t0), 0);
    for ms in (20..=120).step_by(20) {
        drain(&mut p, t0 + Duration::from_millis(ms));
    }
    drain(&mut p, t0 + Duration::from_millis(130));
    assert_eq!(p.heard_frames(t0 + Duration::from_millis(130)), 6);
    // Never more than was sent.
    assert_eq!(p.heard_frames(t0 + Duration::from_secs(5)), p.sent_frames());
}
