//! A whole daemon in one process with its HTTP server, optionally wired to
//! an in-process mock provider over real HTTP on 127.0.0.1. Used by `trackly
//! demo --via-mock`, the provider benchmark and the end-to-end tests.

use crate::mock::{MockConfig, MockServer};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use trackly::app::{Daemon, DaemonParts, http_server};
use trackly::clock::SharedClock;
use trackly::config::{Config, Secrets, TwilioCredentials};
use trackly::domain::{MessageId, ProviderKind, ProviderSettings};
use trackly::providers::ProviderRegistry;
use trackly::ratelimit::PermitBackend;
use trackly::store::Stores;
use trackly::telemetry::Secret;

pub const MOCK_TWILIO_SID: &str = "AC00000000000000000000000000000000";

/// Credentials for talking to the mock, and matching mock settings.
pub fn mock_secrets() -> Secrets {
    let token = MessageId::new().to_hex();
    let mut s = Secrets {
        webhook_token: Some(Secret::new(token)),
        ..Default::default()
    };
    s.infobip
        .insert("default".into(), Secret::new("mock-infobip-key"));
    s.twilio.insert(
        "default".into(),
        TwilioCredentials {
            account_sid: Secret::new(MOCK_TWILIO_SID),
            auth_token: Secret::new("mock-twilio-auth-token"),
        },
    );
    s.cm.insert(
        "default".into(),
        Secret::new("00000000-0000-0000-0000-000000000001"),
    );
    s
}

/// The mock's settings that match [`mock_secrets`], reporting to `public_url`.
pub fn mock_config_for(secrets: &Secrets, public_url: &str, base: MockConfig) -> MockConfig {
    let webhook = secrets
        .webhook_token
        .as_ref()
        .map(|t| t.expose().to_string())
        .unwrap_or_default();
    MockConfig {
        twilio_account_sid: Some(MOCK_TWILIO_SID.into()),
        twilio_auth_token: secrets
            .twilio
            .get("default")
            .map(|c| c.auth_token.expose().to_string()),
        infobip_api_key: secrets
            .infobip
            .get("default")
            .map(|k| k.expose().to_string()),
        cm_product_token: secrets.cm.get("default").map(|k| k.expose().to_string()),
        cm_report_url: Some(format!("{public_url}/webhooks/cm/{webhook}")),
        ..base
    }
}

/// Point every real adapter at `mock_url`.
pub fn use_mock(cfg: &mut Config, mock_url: &str) {
    cfg.providers.infobip.base_url = mock_url.into();
    cfg.providers.twilio.base_url = mock_url.into();
    cfg.providers.cm.base_url = mock_url.into();
}

pub fn settings_for(kind: ProviderKind) -> ProviderSettings {
    match kind {
        ProviderKind::Infobip => ProviderSettings::Infobip {
            credentials: "default".into(),
        },
        ProviderKind::Twilio => ProviderSettings::Twilio {
            credentials: "default".into(),
            messaging_service_sid: None,
        },
        ProviderKind::Cm => ProviderSettings::Cm {
            credentials: "default".into(),
        },
        ProviderKind::Fake => ProviderSettings::Fake,
    }
}

/// A daemon with its HTTP server (and possibly a mock provider).
pub struct HttpDaemon {
    pub daemon: Daemon,
    pub addr: SocketAddr,
    pub public_url: String,
    pub server: actix_web::dev::ServerHandle,
    pub mock: Option<MockServer>,
    /// The secrets the daemon runs with (mock credentials, webhook token).
    pub secrets: Arc<Secrets>,
}

impl HttpDaemon {
    /// Start on the current actix system. With `mock`, a mock provider is
    /// started too, wired both ways (sends to it, reports back to us).
    pub fn start(
        cfg: Config,
        stores: Stores,
        permits: Arc<dyn PermitBackend>,
        clock: SharedClock,
        secrets: Option<Secrets>,
        mock: Option<MockConfig>,
    ) -> std::io::Result<HttpDaemon> {
        Self::start_on(
            "127.0.0.1:0",
            cfg,
            stores,
            permits,
            clock,
            secrets,
            mock,
            None,
        )
    }

    /// [`HttpDaemon::start`] listening on `bind`, with `fake` as its fake
    /// provider (instead of one made from the configuration) when given.
    #[allow(clippy::too_many_arguments)]
    pub fn start_on(
        bind: &str,
        mut cfg: Config,
        stores: Stores,
        permits: Arc<dyn PermitBackend>,
        clock: SharedClock,
        secrets: Option<Secrets>,
        mock: Option<MockConfig>,
        fake: Option<trackly::providers::SharedProvider>,
    ) -> std::io::Result<HttpDaemon> {
        let listener = TcpListener::bind(bind)?;
        let addr = listener.local_addr()?;
        let public_url = format!("http://{addr}");
        cfg.http.public_url = public_url.clone();
        let secrets = secrets.unwrap_or_else(mock_secrets);
        let mock = match mock {
            Some(m) => {
                let server =
                    crate::mock::start(mock_config_for(&secrets, &public_url, m), "127.0.0.1:0")?;
                use_mock(&mut cfg, &server.url());
                Some(server)
            }
            None => None,
        };
        let mut providers =
            ProviderRegistry::from_config(&cfg, &secrets).map_err(std::io::Error::other)?;
        if let Some(fake) = fake {
            providers = providers.with_fake(fake);
        }
        let cfg = Arc::new(cfg);
        let daemon = Daemon::start(DaemonParts {
            config: cfg.clone(),
            daemon_id: format!("embedded-{}", MessageId::new().to_hex()),
            stores,
            permits,
            providers,
            clock,
            bus: Arc::new(trackly::bus::LocalBus::new()),
            secrets: Arc::new(secrets.clone()),
            metrics: Arc::new(trackly::metrics::Metrics::new()),
        });
        let secrets = Arc::new(secrets);
        let state = daemon.http_state(secrets.clone(), &public_url);
        let server = http_server(state, listener, 1)?;
        let handle = server.handle();
        actix_rt::spawn(server);
        Ok(HttpDaemon {
            daemon,
            addr,
            public_url,
            server: handle,
            mock,
            secrets,
        })
    }

    pub async fn stop(self) {
        let _ = self
            .daemon
            .coordinator
            .send(trackly::messages::Shutdown {
                grace: std::time::Duration::from_secs(5),
            })
            .await;
        self.server.stop(false).await;
        if let Some(m) = self.mock {
            // The mock runs its own system on its own thread; stop it off
            // this one.
            let _ = actix_rt::task::spawn_blocking(move || m.stop()).await;
        }
    }
}
