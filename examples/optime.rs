use std::time::Instant;
use trackly::domain::*;
use trackly::store::*;
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let m = trackly::store::mongo::MongoStore::connect(
        "mongodb://127.0.0.1:27117",
        &format!("optime_{}", MessageId::new()),
        std::time::Duration::from_secs(5),
    )
    .await
    .unwrap();
    m.ensure_indexes().await.unwrap();
    let s = Stores::from_backend(std::sync::Arc::new(m.clone()), "mongodb");
    let now = trackly::clock::truncate_ms(chrono::Utc::now());
    let t = Instant::now();
    let c = trackly::seed::campaign(
        &s,
        3000,
        ProviderSettings::Fake,
        1000000,
        Money(1_000_000_000),
        now,
    )
    .await
    .unwrap();
    println!("seed 3000: {:?}", t.elapsed());
    let t = Instant::now();
    let l = s.queue.due_lists(now, 10).await.unwrap();
    println!("due_lists {:?} {}", t.elapsed(), l.len());
    let t = Instant::now();
    let b = s.queue.claim(c.list.id, 1000, "tok", now).await.unwrap();
    println!("claim {:?} {}", t.elapsed(), b.len());
    let ids: Vec<ContactId> = b.iter().map(|m| m.contact).collect();
    let t = Instant::now();
    let st = s.contacts.contact_states(c.list.id, &ids).await.unwrap();
    println!("contact_states {:?} {}", t.elapsed(), st.len());
    let t = Instant::now();
    let _ = s.accounts.debit(c.account.id, Money(1000)).await.unwrap();
    println!("debit {:?}", t.elapsed());
    let recs: Vec<MessageSent> = b
        .iter()
        .map(|q| MessageSent {
            id: q.id,
            account: q.account,
            sending_list: q.sending_list,
            contact: q.contact,
            schedule: None,
            run: None,
            creative: None,
            variant: None,
            send_type: q.send_type,
            from: q.from.clone(),
            to: q.to.clone(),
            length: 1,
            segments: 1,
            cost: Money(1),
            provider: ProviderKind::Fake,
            attempt_token: "tok".into(),
            attempted_at: now,
            submitted: None,
            submitted_at: None,
            provider_message_id: None,
            error_code: None,
            error_text: None,
            delivered: None,
            delivery_state: None,
            delivery_updated_at: None,
            delivery_error_code: None,
        })
        .collect();
    let t = Instant::now();
    s.sent.record_attempts(recs).await.unwrap();
    println!("record_attempts {:?}", t.elapsed());
    let outs: Vec<SendOutcome> = b
        .iter()
        .map(|q| SendOutcome {
            id: q.id,
            submitted: true,
            at: now,
            provider_message_id: Some(format!("p{}", q.id)),
            error_code: None,
            error_text: None,
        })
        .collect();
    let t = Instant::now();
    s.sent.record_outcomes(outs).await.unwrap();
    println!("record_outcomes {:?}", t.elapsed());
    let t = Instant::now();
    let n = s.queue.complete(c.list.id, "tok").await.unwrap();
    println!("complete {:?} {n}", t.elapsed());
    m.drop_database().await.unwrap();
}
