//! Lookups of in-doubt messages, by each adapter against the mock provider
//! over real HTTP: messages the mock took (answered normally, answered 5xx
//! after taking them, or left hanging past the client's timeout) are taken,
//! messages never sent are not; a failing lookup is an error, never a guess.

use std::time::Duration;
use trackly::config::{CmConfig, Dur, InfobipConfig, TwilioConfig, TwilioCredentials};
use trackly::domain::*;
use trackly::providers::cm::Cm;
use trackly::providers::infobip::Infobip;
use trackly::providers::twilio::Twilio;
use trackly::providers::{
    LookupAnswer, LookupError, LookupQuery, OutboundSms, SendResult, SmsProvider,
};
use trackly::telemetry::Secret;
use trackly_devkit::mock::{self, MockConfig, MockServer};

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "twilio-auth-token";
const KEY: &str = "ib-key";

fn sms(i: u64) -> OutboundSms {
    OutboundSms {
        id: MessageId::new(),
        list: SendingListId::new(),
        from: "+15550000001".into(),
        to: trackly_devkit::seed::phone(i),
        body: format!("Hello {i} from the lookup tests"),
        messaging_service_sid: None,
    }
}

fn query(m: &OutboundSms, at: Timestamp) -> LookupQuery {
    LookupQuery {
        id: m.id,
        from: m.from.clone(),
        to: m.to.clone(),
        body: m.body.clone(),
        attempted_at: at,
    }
}

fn mock_cfg() -> MockConfig {
    MockConfig {
        reports: false,
        twilio_account_sid: Some(SID.into()),
        twilio_auth_token: Some(TOKEN.into()),
        infobip_api_key: Some(KEY.into()),
        hang: Duration::from_secs(2),
        ..Default::default()
    }
}

fn infobip(base: &str) -> Infobip {
    Infobip::new(
        &InfobipConfig {
            base_url: base.into(),
            timeout: Dur(Duration::from_millis(500)),
            batch_size: 50,
            concurrency: 2,
        },
        Secret::new(KEY),
        Some("http://127.0.0.1:1/webhooks/infobip/x".into()),
    )
    .unwrap()
}

fn twilio(base: &str) -> Twilio {
    Twilio::new(
        &TwilioConfig {
            base_url: base.into(),
            timeout: Dur(Duration::from_millis(500)),
            concurrency: 8,
        },
        TwilioCredentials {
            account_sid: Secret::new(SID),
            auth_token: Secret::new(TOKEN),
        },
        Some("http://127.0.0.1:1/webhooks/twilio/default".into()),
    )
    .unwrap()
}

/// Send one message normally, one the mock takes and answers 5xx, one the
/// mock takes and answers after the client gave up; a fourth is never sent.
async fn four_fates(m: &MockServer, a: &dyn SmsProvider) -> (Vec<OutboundSms>, Vec<SendResult>) {
    let msgs: Vec<OutboundSms> = (0..4).map(sms).collect();
    let mut results = Vec::new();
    results.extend(a.send(&msgs[..1]).await);
    m.state.set_config(|c| {
        c.error_rate = 1.0;
        c.accept_on_error = true;
    });
    results.extend(a.send(&msgs[1..2]).await);
    m.state.set_config(|c| {
        c.error_rate = 0.0;
        c.hang_rate = 1.0;
    });
    results.extend(a.send(&msgs[2..3]).await);
    m.state.set_config(|c| c.hang_rate = 0.0);
    assert!(
        matches!(results[0], SendResult::Accepted { .. }),
        "{:?}",
        results[0]
    );
    assert!(
        matches!(&results[1], SendResult::InDoubt { code: Some(c), .. } if c.starts_with("HTTP 500")),
        "{:?}",
        results[1]
    );
    assert!(
        matches!(&results[2], SendResult::InDoubt { code: Some(c), .. } if c == "TIMEOUT"),
        "{:?}",
        results[2]
    );
    (msgs, results)
}

#[actix_rt::test]
async fn infobip_lookups_find_what_was_taken_by_our_id() {
    let m = mock::start(mock_cfg(), "127.0.0.1:0").unwrap();
    let a = infobip(&m.url());
    assert!(a.can_look_up());
    let at = chrono::Utc::now();
    let (msgs, _) = four_fates(&m, &a).await;
    let qs: Vec<LookupQuery> = msgs.iter().map(|s| query(s, at)).collect();
    let answers = a.lookup(&qs).await.unwrap();
    for (i, answer) in answers.iter().enumerate().take(3) {
        assert_eq!(
            answer,
            &LookupAnswer::Taken {
                provider_message_id: Some(msgs[i].id.to_hex()),
                delivery: None,
                error_code: None
            },
            "message {i}"
        );
    }
    assert_eq!(answers[3], LookupAnswer::NotTaken);
    assert_eq!(m.state.duplicates(), Vec::<String>::new());
    m.stop();
}

#[actix_rt::test]
async fn infobip_lookups_split_ids_under_the_query_limit_and_ask_for_every_log() {
    let m = mock::start(mock_cfg(), "127.0.0.1:0").unwrap();
    let a = infobip(&m.url());
    let at = chrono::Utc::now();
    let sent: Vec<OutboundSms> = (0..120).map(sms).collect();
    assert!(
        a.send(&sent)
            .await
            .iter()
            .all(|r| matches!(r, SendResult::Accepted { .. }))
    );
    let never: Vec<OutboundSms> = (200..280).map(sms).collect();
    let qs: Vec<LookupQuery> = sent.iter().chain(&never).map(|s| query(s, at)).collect();
    // 200 ids: more than one request's 2,048 characters, more than the
    // default 50 logs per answer.
    let answers = a.lookup(&qs).await.unwrap();
    assert_eq!(answers.len(), 200);
    assert!(
        answers[..120]
            .iter()
            .all(|x| matches!(x, LookupAnswer::Taken { .. }))
    );
    assert!(answers[120..].iter().all(|x| *x == LookupAnswer::NotTaken));
    let lookups = m
        .state
        .counters
        .lookups
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(lookups, 3, "80 ids per request");
    // Older than the 48 h retention: no answer rather than a wrong one.
    let old = query(&never[0], chrono::Utc::now() - chrono::TimeDelta::hours(49));
    assert!(matches!(
        a.lookup(&[old]).await,
        Err(LookupError::Failed(_))
    ));
    m.stop();
}

#[actix_rt::test]
async fn twilio_lookups_match_number_body_and_time() {
    let m = mock::start(mock_cfg(), "127.0.0.1:0").unwrap();
    let a = twilio(&m.url());
    assert!(a.can_look_up());
    let at = chrono::Utc::now();
    let (msgs, results) = four_fates(&m, &a).await;
    let qs: Vec<LookupQuery> = msgs.iter().map(|s| query(s, at)).collect();
    let answers = a.lookup(&qs).await.unwrap();
    let SendResult::Accepted {
        provider_message_id,
    } = &results[0]
    else {
        unreachable!()
    };
    assert_eq!(
        answers[0],
        LookupAnswer::Taken {
            provider_message_id: Some(provider_message_id.clone()),
            delivery: None,
            error_code: None
        }
    );
    for (i, answer) in answers.iter().enumerate().take(3).skip(1) {
        assert!(
            matches!(answer, LookupAnswer::Taken { provider_message_id: Some(sid), delivery: None, .. } if sid.starts_with("SM")),
            "message {i}: {answer:?}"
        );
    }
    assert_eq!(answers[3], LookupAnswer::NotTaken);
    // The same number and sender, another body: not taken.
    let mut other = qs[0].clone();
    other.body.push('!');
    // Sent through a Messaging Service: no sender to filter on.
    let mut pooled = qs[1].clone();
    pooled.from = String::new();
    // From another sender: not that message.
    let mut elsewhere = qs[0].clone();
    elsewhere.from = "+15550000009".into();
    let answers = a.lookup(&[other, pooled, elsewhere]).await.unwrap();
    assert_eq!(answers[0], LookupAnswer::NotTaken);
    assert!(matches!(answers[1], LookupAnswer::Taken { .. }));
    assert_eq!(answers[2], LookupAnswer::NotTaken);
    // Attempted well after the message was created: a different message.
    let mut later = qs[0].clone();
    later.attempted_at = chrono::Utc::now() + chrono::TimeDelta::minutes(10);
    assert_eq!(
        a.lookup(&[later]).await.unwrap(),
        vec![LookupAnswer::NotTaken]
    );
    m.stop();
}

#[actix_rt::test]
async fn twilio_duplicate_bodies_are_an_ambiguous_match_and_count_as_taken() {
    let m = mock::start(mock_cfg(), "127.0.0.1:0").unwrap();
    let a = twilio(&m.url());
    let at = chrono::Utc::now();
    let first = sms(7);
    let mut second = sms(7);
    second.body = first.body.clone();
    let r = a.send(std::slice::from_ref(&first)).await;
    let SendResult::Accepted {
        provider_message_id: first_sid,
    } = &r[0]
    else {
        panic!("{r:?}")
    };
    assert!(matches!(
        a.send(&[second.clone()]).await[0],
        SendResult::Accepted { .. }
    ));
    let answers = a
        .lookup(&[query(&first, at), query(&second, at)])
        .await
        .unwrap();
    for answer in answers {
        assert!(
            matches!(&answer, LookupAnswer::Taken { provider_message_id: Some(sid), .. } if sid == first_sid),
            "the earliest match: {answer:?}"
        );
    }
    m.stop();
}

#[actix_rt::test]
async fn lookups_carry_the_delivery_state_the_provider_knows() {
    let m = mock::start(
        MockConfig {
            reports: true,
            report_delay: Duration::from_millis(10),
            delivered_ratio: 1.0,
            failed_ratio: 0.0,
            report_retries: 0,
            ..mock_cfg()
        },
        "127.0.0.1:0",
    )
    .unwrap();
    let at = chrono::Utc::now();
    let ib = infobip(&m.url());
    let tw = twilio(&m.url());
    let (a, b) = (sms(1), sms(2));
    ib.send(std::slice::from_ref(&a)).await;
    tw.send(std::slice::from_ref(&b)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    for (name, p, msg) in [
        ("infobip", &ib as &dyn SmsProvider, &a),
        ("twilio", &tw, &b),
    ] {
        let answers = p.lookup(&[query(msg, at)]).await.unwrap();
        assert!(
            matches!(
                answers[0],
                LookupAnswer::Taken {
                    delivery: Some(DeliveryState::Delivered),
                    error_code: None,
                    ..
                }
            ),
            "{name}: {:?}",
            answers[0]
        );
    }
    m.stop();
}

#[actix_rt::test]
async fn a_failing_lookup_is_an_error_and_cm_has_none() {
    let m = mock::start(
        MockConfig {
            lookup_fail: true,
            ..mock_cfg()
        },
        "127.0.0.1:0",
    )
    .unwrap();
    let at = chrono::Utc::now();
    let q = query(&sms(1), at);
    for (name, p) in [
        (
            "infobip",
            Box::new(infobip(&m.url())) as Box<dyn SmsProvider>,
        ),
        ("twilio", Box::new(twilio(&m.url()))),
    ] {
        let r = p.lookup(std::slice::from_ref(&q)).await;
        assert_eq!(r, Err(LookupError::Failed("HTTP 503".into())), "{name}");
    }
    assert_eq!(
        m.state
            .counters
            .lookups_failed
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    m.stop();
    // Nothing listening: an error too, never "not taken".
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gone = format!("http://127.0.0.1:{port}");
    assert!(matches!(
        infobip(&gone).lookup(std::slice::from_ref(&q)).await,
        Err(LookupError::Failed(_))
    ));
    assert!(matches!(
        twilio(&gone).lookup(std::slice::from_ref(&q)).await,
        Err(LookupError::Failed(_))
    ));
    let cm = Cm::new(
        &CmConfig {
            base_url: gone,
            timeout: Dur(Duration::from_secs(1)),
            batch_size: 50,
            concurrency: 2,
        },
        Secret::new("00000000-0000-0000-0000-000000000000"),
    )
    .unwrap();
    assert!(!cm.can_look_up());
    assert_eq!(cm.lookup(&[q]).await, Err(LookupError::Unsupported));
}
