//! `devkit`: the demo, the benchmark and the mock provider (development
//! tooling; the daemon is the `trackly` binary).

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "devkit",
    about = "Trackly development tooling: demo, benchmark, mock provider"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a campaign over 10,000 contacts in one process: explain, trigger,
    /// queue, send. In-memory store, in-process rate limiter, fake provider.
    /// Needs nothing installed.
    Demo {
        /// Contacts of the account (the union of the campaign's two
        /// audiences; about 6% are skipped, by reason).
        #[arg(long, default_value_t = 10_000)]
        contacts: u64,
        /// The list's rate limit, messages per minute (the documentation's
        /// default is 17000; the demo uses its ~500k/min target, or 3000
        /// with --dashboard, so the campaign can be watched).
        #[arg(long)]
        rate_per_minute: Option<u32>,
        /// Fake provider latency per call.
        #[arg(long, default_value = "20ms", value_parser = humantime::parse_duration)]
        latency: std::time::Duration,
        /// Fraction of messages the fake provider rejects.
        #[arg(long, default_value_t = 0.005)]
        reject_rate: f64,
        /// Fraction of provider calls that fail transiently (retried).
        #[arg(long, default_value_t = 0.01)]
        transient_rate: f64,
        /// Send through a real adapter (infobip, twilio or cm) to a mock
        /// provider over HTTP on 127.0.0.1, with delivery reports coming back
        /// to the daemon's webhooks.
        #[arg(long, value_parser = parse_provider)]
        via_mock: Option<trackly::domain::ProviderKind>,
        /// Serve the admin API and the dashboard (/dashboard) while the
        /// campaign runs and after it ends, until Ctrl-C; prints the URL and
        /// an operator and a read-only token (TRACKLY_ADMIN_TOKEN and
        /// TRACKLY_READONLY_TOKEN when set).
        #[arg(long)]
        dashboard: bool,
        /// Where --dashboard listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        bind: String,
    },
    /// Measure end-to-end throughput, latency and round trips with the fake
    /// provider (build with --release). Not a test.
    Bench {
        /// executor (store and actors, fake provider), providers (adapters to
        /// the mock over HTTP, report ingestion and link redirects), campaign (audience
        /// evaluation and queuing; on MongoDB also a campaign end to end),
        /// webhooks (customer delivery webhooks posted per second to a local
        /// receiver), resolver (in-doubt messages resolved by provider
        /// lookups), or all.
        #[arg(long, default_value = "executor")]
        suite: String,
        /// In-doubt messages per provider in the resolver suite.
        #[arg(long, default_value_t = 500)]
        resolver_messages: u64,
        /// Outbox entries posted by the webhooks suite (in memory).
        #[arg(long, default_value_t = 20_000)]
        webhook_entries: u64,
        /// Outbox entries posted by the webhooks suite on MongoDB.
        #[arg(long, default_value_t = 2_000)]
        mongo_webhook_entries: u64,
        /// Contacts evaluated and queued by the campaign suite (in memory).
        #[arg(long, default_value_t = 1_000_000)]
        contacts: u64,
        /// Contacts evaluated and queued by the campaign suite on MongoDB.
        #[arg(long, default_value_t = 20_000)]
        mongo_contacts: u64,
        /// Contacts of the campaign sent end to end on MongoDB (0: skip).
        #[arg(long, default_value_t = 5_000)]
        end_to_end: u64,
        /// Seconds the end-to-end daemon runs idle before its campaign falls
        /// due (its polls back off as a long-lived daemon's have).
        #[arg(long, default_value_t = 65)]
        warm_up: u64,
        /// Messages through each batch adapter (Infobip, CM).
        #[arg(long, default_value_t = 100_000)]
        provider_messages: u64,
        /// Messages through Twilio's per-message API.
        #[arg(long, default_value_t = 30_000)]
        twilio_messages: u64,
        /// Delivery reports for the ingestion figure.
        #[arg(long, default_value_t = 100_000)]
        reports: u64,
        /// memory, mongodb, or both.
        #[arg(long, default_value = "both")]
        store: String,
        /// Backlog size for the in-memory drain.
        #[arg(long, default_value_t = 200_000)]
        messages: u64,
        /// Backlog size for the MongoDB drain (the test server is slow).
        #[arg(long, default_value_t = 5_000)]
        mongo_messages: u64,
        /// Fake provider latency per call.
        #[arg(long, default_value = "20ms", value_parser = humantime::parse_duration)]
        latency: std::time::Duration,
        /// Offered load of the steady phase, msg/s (in-memory).
        #[arg(long, default_value_t = 20_000)]
        steady_rate: u64,
        /// Offered load of the steady phase on MongoDB, msg/s (below what the
        /// test server sustains, so latency is not queueing).
        #[arg(long, default_value_t = 50)]
        mongo_steady_rate: u64,
        /// Seconds of steady load.
        #[arg(long, default_value_t = 5)]
        steady_secs: u64,
        #[arg(long, env = "MONGODB_URI", default_value = "mongodb://127.0.0.1:27017")]
        mongodb_uri: String,
        #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
        redis_url: String,
    },
    /// Run a mock SMS provider speaking Infobip, Twilio and CM over HTTP,
    /// posting delivery reports back (tests, demo, benchmarks).
    MockProvider {
        #[arg(long, default_value = "127.0.0.1:9090")]
        bind: String,
        /// HTTP worker threads.
        #[arg(long, default_value_t = 1)]
        workers: usize,
        #[arg(long, default_value = "0ms", value_parser = humantime::parse_duration)]
        latency: std::time::Duration,
        /// Fraction of requests answered 429.
        #[arg(long, default_value_t = 0.0)]
        throttle_rate: f64,
        /// Fraction of requests answered 5xx.
        #[arg(long, default_value_t = 0.0)]
        error_rate: f64,
        /// The 5xx status of those answers.
        #[arg(long, default_value_t = 500)]
        error_status: u16,
        /// Take the messages before answering 5xx (the in-doubt case).
        #[arg(long)]
        accept_on_error: bool,
        /// Twilio: a number (E.164) taken and then answered 5xx; repeatable.
        #[arg(long)]
        error_number: Vec<String>,
        /// Twilio: a number answered 429 the first time only; repeatable.
        #[arg(long)]
        throttle_once_number: Vec<String>,
        /// Retries of a failed report POST (backoff from 200 ms, doubling).
        #[arg(long, default_value_t = 5)]
        report_retries: u32,
        /// Fraction of requests that hang for --hang before answering.
        #[arg(long, default_value_t = 0.0)]
        hang_rate: f64,
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        hang: std::time::Duration,
        /// Fraction of messages rejected permanently.
        #[arg(long, default_value_t = 0.0)]
        reject_rate: f64,
        /// A number (E.164) always rejected; repeatable.
        #[arg(long)]
        reject_number: Vec<String>,
        /// A number (E.164) that replied STOP (Twilio 21610); repeatable.
        #[arg(long)]
        stop_number: Vec<String>,
        /// Do not post delivery reports.
        #[arg(long)]
        no_reports: bool,
        #[arg(long, default_value = "200ms", value_parser = humantime::parse_duration)]
        report_delay: std::time::Duration,
        #[arg(long, default_value_t = 0.95)]
        delivered_ratio: f64,
        #[arg(long, default_value_t = 0.05)]
        failed_ratio: f64,
        /// Post an intermediate report before the final one.
        #[arg(long)]
        intermediate: bool,
        #[arg(long, env = "MOCK_TWILIO_ACCOUNT_SID")]
        twilio_account_sid: Option<String>,
        /// Signs Twilio status callbacks (and checks basic auth with the SID).
        #[arg(long, env = "MOCK_TWILIO_AUTH_TOKEN")]
        twilio_auth_token: Option<String>,
        #[arg(long, env = "MOCK_INFOBIP_API_KEY")]
        infobip_api_key: Option<String>,
        #[arg(long, env = "MOCK_CM_PRODUCT_TOKEN")]
        cm_product_token: Option<String>,
        /// Where CM status reports are posted.
        #[arg(long)]
        cm_report_url: Option<String>,
        #[arg(long)]
        cm_report_xml: bool,
        /// Lookups (Infobip logs, Twilio message lists) answer 503.
        #[arg(long)]
        lookup_fail: bool,
    },
}

fn parse_provider(s: &str) -> Result<trackly::domain::ProviderKind, String> {
    use trackly::domain::ProviderKind;
    match s {
        "infobip" => Ok(ProviderKind::Infobip),
        "twilio" => Ok(ProviderKind::Twilio),
        "cm" => Ok(ProviderKind::Cm),
        other => Err(format!("expected infobip, twilio or cm, not {other:?}")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo {
            contacts,
            rate_per_minute,
            latency,
            reject_rate,
            transient_rate,
            via_mock,
            dashboard,
            bind,
        } => {
            trackly::telemetry::init("warn", false);
            let opts = trackly_devkit::demo::DemoOptions {
                contacts,
                rate_per_minute: rate_per_minute.unwrap_or(if dashboard { 3_000 } else { 500_000 }),
                latency,
                reject_rate,
                transient_rate,
                quiet: false,
                via_mock,
                dashboard: dashboard.then_some(bind),
            };
            let run = async move {
                let (summary, served) = trackly_devkit::demo::run_serving(opts).await?;
                println!("{}", summary.table());
                if let Some(s) = served {
                    println!("{}", s.banner());
                    println!("The campaign is over; the daemon keeps serving. Ctrl-C stops it.");
                    let _ = tokio::signal::ctrl_c().await;
                    s.daemon.stop().await;
                }
                Ok::<_, String>(())
            };
            match actix_rt::System::new().block_on(run) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("demo failed: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Bench {
            suite,
            resolver_messages,
            webhook_entries,
            mongo_webhook_entries,
            contacts,
            mongo_contacts,
            end_to_end,
            warm_up,
            provider_messages,
            twilio_messages,
            reports,
            store,
            messages,
            mongo_messages,
            latency,
            steady_rate,
            mongo_steady_rate,
            steady_secs,
            mongodb_uri,
            redis_url,
        } => {
            trackly::telemetry::init("warn", false);
            use trackly::config::StoreBackend;
            let (executor, providers, campaign, webhooks, resolver) = match suite.as_str() {
                "executor" => (true, false, false, false, false),
                "providers" => (false, true, false, false, false),
                "campaign" => (false, false, true, false, false),
                "webhooks" => (false, false, false, true, false),
                "resolver" => (false, false, false, false, true),
                "all" => (true, true, true, true, true),
                other => {
                    eprintln!(
                        "--suite must be executor, providers, campaign, webhooks, resolver or all, not {other:?}"
                    );
                    return ExitCode::from(2);
                }
            };
            let stores: Vec<StoreBackend> = match store.as_str() {
                "memory" => vec![StoreBackend::Memory],
                "mongodb" => vec![StoreBackend::Mongodb],
                "both" => vec![StoreBackend::Memory, StoreBackend::Mongodb],
                other => {
                    eprintln!("--store must be memory, mongodb or both, not {other:?}");
                    return ExitCode::from(2);
                }
            };
            println!(
                "devkit bench: provider latency {latency:?}, {} cores",
                std::thread::available_parallelism().map_or(1, |n| n.get())
            );
            if executor {
                for s in stores.clone() {
                    let mongo = s == StoreBackend::Mongodb;
                    let opts = trackly_devkit::bench::BenchOptions {
                        store: s,
                        messages: if mongo { mongo_messages } else { messages },
                        latency,
                        steady_rate: if mongo {
                            mongo_steady_rate
                        } else {
                            steady_rate
                        },
                        steady_secs,
                        mongodb_uri: mongodb_uri.clone(),
                        redis_url: redis_url.clone(),
                    };
                    match actix_rt::System::new().block_on(trackly_devkit::bench::run(opts)) {
                        Ok(r) => println!("{}", r.table()),
                        Err(e) => {
                            eprintln!("bench failed: {e}");
                            return ExitCode::FAILURE;
                        }
                    }
                }
            }
            if campaign {
                for s in &stores {
                    let mongo = *s == StoreBackend::Mongodb;
                    let opts = trackly_devkit::campaign_bench::CampaignBenchOptions {
                        store: *s,
                        contacts: if mongo { mongo_contacts } else { contacts },
                        end_to_end: if mongo { end_to_end } else { 0 },
                        warm_up: std::time::Duration::from_secs(warm_up),
                        latency,
                        mongodb_uri: mongodb_uri.clone(),
                        redis_url: redis_url.clone(),
                    };
                    match actix_rt::System::new()
                        .block_on(trackly_devkit::campaign_bench::run(opts))
                    {
                        Ok(r) => println!("{}", r.table()),
                        Err(e) => {
                            eprintln!("bench failed: {e}");
                            return ExitCode::FAILURE;
                        }
                    }
                }
            }
            if webhooks {
                for s in &stores {
                    let mongo = *s == StoreBackend::Mongodb;
                    let opts = trackly_devkit::webhook_bench::WebhookBenchOptions {
                        store: *s,
                        entries: if mongo {
                            mongo_webhook_entries
                        } else {
                            webhook_entries
                        },
                        mongodb_uri: mongodb_uri.clone(),
                    };
                    match actix_rt::System::new().block_on(trackly_devkit::webhook_bench::run(opts))
                    {
                        Ok(r) => println!("{}", r.table()),
                        Err(e) => {
                            eprintln!("bench failed: {e}");
                            return ExitCode::FAILURE;
                        }
                    }
                }
            }
            if resolver {
                for s in &stores {
                    let opts = trackly_devkit::resolver_bench::ResolverBenchOptions {
                        store: *s,
                        messages: resolver_messages,
                        mongodb_uri: mongodb_uri.clone(),
                    };
                    match actix_rt::System::new()
                        .block_on(trackly_devkit::resolver_bench::run(opts))
                    {
                        Ok(r) => println!("{}", r.table()),
                        Err(e) => {
                            eprintln!("bench failed: {e}");
                            return ExitCode::FAILURE;
                        }
                    }
                }
            }
            if providers {
                use trackly::domain::ProviderKind;
                println!(
                    "\nadapters to `devkit mock-provider` (a separate process) over HTTP on 127.0.0.1, in-memory store:"
                );
                for (kind, n) in [
                    (ProviderKind::Infobip, provider_messages),
                    (ProviderKind::Cm, provider_messages),
                    (ProviderKind::Twilio, twilio_messages),
                ] {
                    let r = actix_rt::System::new()
                        .block_on(trackly_devkit::bench::provider_throughput(kind, n, latency));
                    match r {
                        Ok(r) => println!(
                            "  {:<8} {} messages in {:.2} s = {:.0} msg/s; CPU: mock {:.0}% of a core, daemon {:.0}%; sent twice: {}",
                            r.provider,
                            r.messages,
                            r.seconds,
                            r.msg_per_sec,
                            r.mock_cpu * 100.0,
                            r.daemon_cpu * 100.0,
                            r.duplicates
                        ),
                        Err(e) => {
                            eprintln!("bench failed: {e}");
                            return ExitCode::FAILURE;
                        }
                    }
                }
                match actix_rt::System::new()
                    .block_on(trackly_devkit::bench::report_ingestion(reports, 16))
                {
                    Ok(r) => println!(
                        "  report ingestion: {} Infobip reports (100 per POST, 16 in flight) in {:.2} s = {:.0} reports/s, durable before each answer",
                        r.reports, r.seconds, r.per_sec
                    ),
                    Err(e) => {
                        eprintln!("bench failed: {e}");
                        return ExitCode::FAILURE;
                    }
                }
                match actix_rt::System::new()
                    .block_on(trackly_devkit::bench::link_redirects(100_000, 64))
                {
                    Ok(r) => println!(
                        "  link redirects: {} GET /l/<code> (64 in flight, in-memory store) in {:.2} s = {:.0} redirects/s; clicks recorded {}, dropped {}",
                        r.requests, r.seconds, r.per_sec, r.clicks_recorded, r.clicks_dropped
                    ),
                    Err(e) => {
                        eprintln!("bench failed: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            ExitCode::SUCCESS
        }
        Command::MockProvider {
            bind,
            workers,
            latency,
            throttle_rate,
            error_rate,
            error_status,
            accept_on_error,
            error_number,
            throttle_once_number,
            report_retries,
            hang_rate,
            hang,
            reject_rate,
            reject_number,
            stop_number,
            no_reports,
            report_delay,
            delivered_ratio,
            failed_ratio,
            intermediate,
            twilio_account_sid,
            twilio_auth_token,
            infobip_api_key,
            cm_product_token,
            cm_report_url,
            cm_report_xml,
            lookup_fail,
        } => {
            trackly::telemetry::init("warn", false);
            let cfg = trackly_devkit::mock::MockConfig {
                latency,
                throttle_rate,
                error_rate,
                error_status,
                accept_on_error,
                error_numbers: error_number.into_iter().collect(),
                throttle_once_numbers: throttle_once_number.into_iter().collect(),
                report_retries,
                hang_rate,
                hang,
                reject_rate,
                reject_numbers: reject_number.into_iter().collect(),
                stop_numbers: stop_number.into_iter().collect(),
                reports: !no_reports,
                report_delay,
                delivered_ratio,
                failed_ratio,
                intermediate,
                twilio_account_sid,
                twilio_auth_token,
                infobip_api_key,
                cm_product_token,
                cm_report_url,
                cm_report_xml,
                lookup_fail,
                seed: std::process::id() as u64,
            };
            let result = actix_rt::System::new().block_on(async move {
                let (server, addr, _state) = trackly_devkit::mock::build(cfg, &bind, workers)?;
                println!("mock provider listening on http://{addr}");
                server.await
            });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("mock provider: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
