//! Provider adapters against the mock provider over real HTTP on
//! 127.0.0.1, for every outcome class; delivery-report parsing against
//! fixture payloads for every status value.

use std::time::Duration;
use trackly::config::{CmConfig, Dur, InfobipConfig, TwilioConfig, TwilioCredentials};
use trackly::domain::*;
use trackly::providers::cm::Cm;
use trackly::providers::infobip::Infobip;
use trackly::providers::twilio::Twilio;
use trackly::providers::{self, OutboundSms, SendResult, SmsProvider};
use trackly::telemetry::Secret;
use trackly_devkit::mock::{self, MockConfig};

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "twilio-auth-token";

fn sms(i: u64) -> OutboundSms {
    OutboundSms {
        id: MessageId::new(),
        list: SendingListId::new(),
        from: "+15550000001".into(),
        to: trackly_devkit::seed::phone(i),
        body: "Hello from the adapter tests".into(),
        messaging_service_sid: None,
    }
}

fn mock_cfg() -> MockConfig {
    MockConfig {
        reports: false,
        twilio_account_sid: Some(SID.into()),
        twilio_auth_token: Some(TOKEN.into()),
        infobip_api_key: Some("ib-key".into()),
        cm_product_token: Some("00000000-0000-0000-0000-000000000000".into()),
        hang: Duration::from_secs(3),
        ..Default::default()
    }
}

fn adapters(base: &str, timeout: Duration) -> Vec<(&'static str, Box<dyn SmsProvider>)> {
    let t = Dur(timeout);
    vec![
        (
            "infobip",
            Box::new(
                Infobip::new(
                    &InfobipConfig {
                        base_url: base.into(),
                        timeout: t,
                        batch_size: 50,
                        concurrency: 2,
                    },
                    Secret::new("ib-key"),
                    Some("http://127.0.0.1:1/webhooks/infobip/x".into()),
                )
                .unwrap(),
            ),
        ),
        (
            "twilio",
            Box::new(
                Twilio::new(
                    &TwilioConfig {
                        base_url: base.into(),
                        timeout: t,
                        concurrency: 8,
                    },
                    TwilioCredentials {
                        account_sid: Secret::new(SID),
                        auth_token: Secret::new(TOKEN),
                    },
                    Some("http://127.0.0.1:1/webhooks/twilio/default".into()),
                )
                .unwrap(),
            ),
        ),
        (
            "cm",
            Box::new(
                Cm::new(
                    &CmConfig {
                        base_url: base.into(),
                        timeout: t,
                        batch_size: 50,
                        concurrency: 2,
                    },
                    Secret::new("00000000-0000-0000-0000-000000000000"),
                )
                .unwrap(),
            ),
        ),
    ]
}

#[actix_rt::test]
async fn accepted_messages_are_recorded_once_at_the_provider() {
    let m = mock::start(mock_cfg(), "127.0.0.1:0").unwrap();
    for (name, a) in adapters(&m.url(), Duration::from_secs(5)) {
        let msgs: Vec<OutboundSms> = (0..120).map(sms).collect();
        let r = a.send(&msgs).await;
        assert_eq!(r.len(), 120, "{name}");
        for (res, msg) in r.iter().zip(&msgs) {
            match res {
                SendResult::Accepted {
                    provider_message_id,
                } => {
                    if name != "twilio" {
                        assert_eq!(
                            provider_message_id,
                            &msg.id.to_hex(),
                            "{name}: our id is the reference"
                        );
                    } else {
                        assert!(provider_message_id.starts_with("SM"), "{name}");
                    }
                }
                other => panic!("{name}: {other:?}"),
            }
            assert_eq!(
                m.state.accepted().get(&msg.id.to_hex()),
                Some(&1),
                "{name} recorded our id"
            );
        }
    }
    assert!(m.state.duplicates().is_empty());
    m.stop();
}

#[actix_rt::test]
async fn permanent_rejections_carry_the_providers_code() {
    let stop = trackly_devkit::seed::phone(2).as_str().to_string();
    let bad = trackly_devkit::seed::phone(1).as_str().to_string();
    let m = mock::start(
        MockConfig {
            reject_numbers: [bad.clone()].into_iter().collect(),
            stop_numbers: [stop.clone()].into_iter().collect(),
            ..mock_cfg()
        },
        "127.0.0.1:0",
    )
    .unwrap();
    for (name, a) in adapters(&m.url(), Duration::from_secs(5)) {
        let msgs = vec![sms(0), sms(1), sms(2)];
        let r = a.send(&msgs).await;
        assert!(
            matches!(r[0], SendResult::Accepted { .. }),
            "{name}: {:?}",
            r[0]
        );
        let (code1, unsub1) = match &r[1] {
            SendResult::Rejected {
                code, unsubscribed, ..
            } => (code.clone(), *unsubscribed),
            other => panic!("{name}: {other:?}"),
        };
        let (code2, unsub2) = match &r[2] {
            SendResult::Rejected {
                code, unsubscribed, ..
            } => (code.clone(), *unsubscribed),
            other => panic!("{name}: {other:?}"),
        };
        match name {
            // Infobip rejects per destination inside a 200.
            "infobip" => {
                assert_eq!(code1, "REJECTED_DESTINATION");
                assert!(!unsub1 && !unsub2);
            }
            // Twilio: 21211 invalid number; 21610 the recipient sent STOP.
            "twilio" => {
                assert_eq!((code1.as_str(), unsub1), ("21211", false));
                assert_eq!((code2.as_str(), unsub2), ("21610", true));
            }
            // CM: partial acceptance (errorCode 201), message by message.
            "cm" => {
                assert_eq!(code1, "303");
                assert!(!unsub1);
            }
            _ => unreachable!(),
        }
    }
    // CM with every message rejected answers 400 with errorCode 201.
    let cm = &adapters(&m.url(), Duration::from_secs(5))[2].1;
    let r = cm.send(&[sms(1)]).await;
    assert!(
        matches!(&r[0], SendResult::Rejected { code, .. } if code == "303"),
        "{:?}",
        r[0]
    );
    m.stop();
}

#[actix_rt::test]
async fn throttling_is_transient_and_every_server_error_is_in_doubt() {
    let m = mock::start(
        MockConfig {
            throttle_rate: 1.0,
            ..mock_cfg()
        },
        "127.0.0.1:0",
    )
    .unwrap();
    // 429: documented as "not processed": retried (and slows the list).
    for (name, a) in adapters(&m.url(), Duration::from_secs(5)) {
        let r = a.send(&[sms(0), sms(1)]).await;
        for x in &r {
            assert!(
                matches!(
                    x,
                    SendResult::Transient {
                        throttled: true,
                        ..
                    }
                ),
                "{name}: {x:?}"
            );
        }
    }
    // 500, 502, 503, 504: nothing documents them as "not processed"; a
    // 5xx may follow a request that went through. In doubt, never resent.
    for status in [500u16, 502, 503, 504] {
        m.state.set_config(|c| {
            c.throttle_rate = 0.0;
            c.error_rate = 1.0;
            c.error_status = status;
        });
        for (name, a) in adapters(&m.url(), Duration::from_secs(5)) {
            let r = a.send(&[sms(0)]).await;
            match &r[0] {
                SendResult::InDoubt {
                    code: Some(code), ..
                } => {
                    assert!(code.contains(&status.to_string()), "{name}: {code}")
                }
                other => panic!("{name} HTTP {status}: {other:?}"),
            }
        }
    }
    assert_eq!(m.state.accepted_count(), 0, "this mock took nothing");
    // And the case that makes 5xx dangerous to retry: taken, then 5xx.
    m.state.set_config(|c| c.accept_on_error = true);
    for (name, a) in adapters(&m.url(), Duration::from_secs(5)) {
        let r = a.send(&[sms(7)]).await;
        assert!(
            matches!(r[0], SendResult::InDoubt { .. }),
            "{name}: {:?}",
            r[0]
        );
    }
    assert_eq!(
        m.state.accepted_count(),
        3,
        "each adapter's message was taken while answered 5xx"
    );
    m.stop();
}

#[actix_rt::test]
async fn wrong_credentials_are_transient_not_a_dead_letter_per_message() {
    let m = mock::start(
        MockConfig {
            twilio_auth_token: Some("another-token".into()),
            infobip_api_key: Some("another-key".into()),
            cm_product_token: Some("11111111-1111-1111-1111-111111111111".into()),
            ..mock_cfg()
        },
        "127.0.0.1:0",
    )
    .unwrap();
    for (name, a) in adapters(&m.url(), Duration::from_secs(5)) {
        let r = a.send(&[sms(0)]).await;
        assert!(
            matches!(
                r[0],
                SendResult::Transient {
                    throttled: false,
                    ..
                }
            ),
            "{name}: {:?}",
            r[0]
        );
    }
    m.stop();
}

#[actix_rt::test]
async fn a_hang_past_the_timeout_is_no_response() {
    let m = mock::start(
        MockConfig {
            hang_rate: 1.0,
            ..mock_cfg()
        },
        "127.0.0.1:0",
    )
    .unwrap();
    for (name, a) in adapters(&m.url(), Duration::from_millis(300)) {
        let r = a.send(&[sms(0)]).await;
        assert!(
            matches!(r[0], SendResult::InDoubt { .. }),
            "{name}: {:?}",
            r[0]
        );
    }
    // The mock took them: exactly the in-doubt case.
    assert_eq!(m.state.accepted_count(), 3);
    m.stop();
}

#[actix_rt::test]
async fn a_refused_connection_is_transient() {
    // Nothing listens on this port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for (name, a) in adapters(&format!("http://127.0.0.1:{port}"), Duration::from_secs(2)) {
        let r = a.send(&[sms(0)]).await;
        assert!(
            matches!(&r[0], SendResult::Transient { code, throttled: false, .. } if code == "CONNECT"),
            "{name}: {:?}",
            r[0]
        );
    }
}

#[test]
fn requests_render_numbers_and_references_the_way_each_provider_expects() {
    let m = sms(7);
    let ib = trackly::providers::infobip::request_body(
        std::slice::from_ref(&m),
        Some("https://d/webhooks/infobip/t"),
    );
    let v = serde_json::to_value(&ib).unwrap();
    assert_eq!(v["messages"][0]["destinations"][0]["to"], m.to.digits());
    assert_eq!(
        v["messages"][0]["destinations"][0]["messageId"],
        m.id.to_hex()
    );
    assert_eq!(
        v["messages"][0]["notifyUrl"],
        "https://d/webhooks/infobip/t"
    );
    assert_eq!(v["messages"][0]["notifyContentType"], "application/json");
    assert_eq!(v["messages"][0]["callbackData"], m.id.to_hex());
    let cm = serde_json::to_value(trackly::providers::cm::request_body(
        std::slice::from_ref(&m),
        "tok",
    ))
    .unwrap();
    assert_eq!(cm["messages"]["authentication"]["producttoken"], "tok");
    assert_eq!(cm["messages"]["msg"][0]["to"][0]["number"], m.to.with_00());
    assert_eq!(cm["messages"]["msg"][0]["reference"], m.id.to_hex());
    assert_eq!(cm["messages"]["msg"][0]["body"]["type"], "auto");
    let tw = trackly::providers::twilio::form_fields(&m, Some("https://d/webhooks/twilio/default"));
    assert!(tw.contains(&("To", m.to.as_str().to_string())));
    assert!(tw.contains(&(
        "StatusCallback",
        format!("https://d/webhooks/twilio/default?m={}", m.id.to_hex())
    )));
    let mut ms = m.clone();
    ms.messaging_service_sid = Some("MG123".into());
    let tw = trackly::providers::twilio::form_fields(&ms, None);
    assert!(tw.contains(&("MessagingServiceSid", "MG123".to_string())));
    assert!(!tw.iter().any(|(k, _)| *k == "From"));
}

// ------------------------------------------------------- report fixtures

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/dlr/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn id(s: &str) -> Option<MessageId> {
    Some(s.parse().unwrap())
}

#[test]
fn infobip_reports_map_every_status_group() {
    use DeliveryState::*;
    let r = providers::infobip::parse_reports(&fixture("infobip_v2.json")).unwrap();
    let got: Vec<(Option<MessageId>, DeliveryState, Option<&str>)> = r
        .iter()
        .map(|x| (x.id, x.state, x.error_code.as_deref()))
        .collect();
    assert_eq!(
        got,
        vec![
            (id("6b07a04f5bf2c21f0a43e6c1"), Pending, None),
            (id("6b07a04f5bf2c21f0a43e6c2"), Pending, None),
            (id("6b07a04f5bf2c21f0a43e6c3"), Pending, None),
            (
                id("6b07a04f5bf2c21f0a43e6c4"),
                Undelivered,
                Some("EC_UNKNOWN_SUBSCRIBER")
            ),
            (
                id("6b07a04f5bf2c21f0a43e6c5"),
                Undelivered,
                Some("EC_OPERATOR_REJECTED")
            ),
            (id("6b07a04f5bf2c21f0a43e6c6"), Delivered, None),
            // DELIVERED_TO_OPERATOR is intermediate.
            (id("6b07a04f5bf2c21f0a43e6c7"), Pending, None),
            (
                id("6b07a04f5bf2c21f0a43e6c8"),
                Expired,
                Some("EXPIRED_EXPIRED")
            ),
            (
                id("6b07a04f5bf2c21f0a43e6c9"),
                Expired,
                Some("EXPIRED_DLR_UNKNOWN")
            ),
            (
                id("6b07a04f5bf2c21f0a43e6ca"),
                Rejected,
                Some("REJECTED_DND")
            ),
        ]
    );
    // v3 field names; the id comes back through callbackData; a reference
    // that is not ours is reported as such, not as an error.
    let r = providers::infobip::parse_reports(&fixture("infobip_v3.json")).unwrap();
    assert_eq!(
        (r[0].id, r[0].state),
        (id("6b07a04f5bf2c21f0a43e6cb"), Delivered)
    );
    assert_eq!(r[1].id, None);
    for bad in [
        &b"not json"[..],
        b"{}",
        b"{\"results\":[{\"messageId\":\"x\"}]}",
    ] {
        assert!(providers::infobip::parse_reports(bad).is_err());
    }
}

#[test]
fn twilio_callbacks_map_every_status() {
    use DeliveryState::*;
    let cases = [
        ("accepted", Some(Pending)),
        ("scheduled", Some(Pending)),
        ("queued", Some(Pending)),
        ("sending", Some(Pending)),
        ("sent", Some(Pending)),
        ("delivered", Some(Delivered)),
        ("read", Some(Delivered)),
        ("undelivered", Some(Undelivered)),
        ("failed", Some(Failed)),
        ("canceled", Some(Failed)),
        ("partially_delivered", Some(Failed)),
        ("receiving", None),
        ("received", None),
    ];
    let ours = MessageId::new().to_hex();
    for (status, expected) in cases {
        let mut params = vec![
            ("MessageSid".to_string(), "SM1".to_string()),
            ("MessageStatus".to_string(), status.to_string()),
        ];
        if status == "undelivered" {
            params.push(("ErrorCode".into(), "30003".into()));
        }
        let r = providers::twilio::parse_callback(&params, Some(&ours)).unwrap();
        assert_eq!(r.as_ref().map(|r| r.state), expected, "{status}");
        if status == "undelivered" {
            assert_eq!(r.unwrap().error_code.as_deref(), Some("30003"));
        }
    }
    let no_status = vec![("MessageSid".to_string(), "SM1".to_string())];
    assert!(providers::twilio::parse_callback(&no_status, Some(&ours)).is_err());
}

#[test]
fn cm_reports_map_every_code_in_json_and_xml() {
    use DeliveryState::*;
    let r = providers::cm::parse_json_reports(&fixture("cm_single.json")).unwrap();
    assert_eq!(
        (r[0].id, r[0].state),
        (id("6b07a04f5bf2c21f0a43e6d1"), Delivered)
    );
    let r = providers::cm::parse_json_reports(&fixture("cm_array.json")).unwrap();
    let got: Vec<(Option<MessageId>, DeliveryState, Option<&str>)> = r
        .iter()
        .map(|x| (x.id, x.state, x.error_code.as_deref()))
        .collect();
    assert_eq!(
        got,
        vec![
            (id("6b07a04f5bf2c21f0a43e6d2"), Pending, None),
            (id("6b07a04f5bf2c21f0a43e6d3"), Rejected, Some("5")),
            (id("6b07a04f5bf2c21f0a43e6d4"), Failed, Some("13")),
            (id("6b07a04f5bf2c21f0a43e6d5"), Delivered, None),
            (None, Delivered, None),
        ]
    );
    let r = providers::cm::parse_xml_reports(&fixture("cm.xml")).unwrap();
    assert_eq!(r.len(), 2);
    assert_eq!(
        (r[0].id, r[0].state),
        (id("6b07a04f5bf2c21f0a43e6d6"), Delivered)
    );
    assert_eq!(
        (r[1].state, r[1].error_code.as_deref()),
        (Failed, Some("13"))
    );
    for bad in [
        &b"{\"messages\":{}}"[..],
        b"{\"messages\":{\"msg\":{\"status\":{\"code\":\"9\"}}}}",
        b"nope",
    ] {
        assert!(
            providers::cm::parse_json_reports(bad).is_err(),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    for bad in [
        &b"<MESSAGES><MSG>"[..],
        b"<OTHER/>",
        b"<MESSAGES><MSG><STATUS><CODE>x</CODE></STATUS></MSG></MESSAGES>",
    ] {
        assert!(
            providers::cm::parse_xml_reports(bad).is_err(),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}
