//! Wiring: opens the store, loads or makes the certificates, binds the
//! HTTPS listener (and the optional plain-HTTP redirect), mounts both
//! surfaces behind the LAN guard and security headers, starts discovery
//! and the background jobs, and reports readiness to systemd.
//!
//! [`Application::build`] binds before it returns and reports the port it
//! got, so tests can ask for `127.0.0.1:0`. It binds first of all, before
//! it creates anything in the data directory, so a hub that cannot listen
//! leaves no database, CA or setup code behind; once bound it logs every
//! URL it can be reached at (see `urls`).

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::http::header;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use anyhow::Context;

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::discovery::{Discovery, DiscoveryOptions, HubAdvert};
use crate::error::{Code, Error};
use crate::events::{Events, PageEvent, ToyChange};
use crate::http::{self, RouteInfo, Routes};
use crate::pairing::Pairings;
use crate::pki::HubPki;
use crate::state::AppState;
use crate::store::{self, Store};

/// A bound, not yet running hub.
pub struct Application {
    port: u16,
    redirect_port: Option<u16>,
    server: Server,
    redirect: Option<Server>,
    state: web::Data<AppState>,
}

/// Every route of the app (both surfaces) with the access it needs.
pub fn route_table() -> Vec<RouteInfo> {
    let mut r = Routes::recorder();
    crate::web::register(&mut r);
    crate::toy_api::register(&mut r);
    r.list
}

fn bind(addr: std::net::SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).map_err(|e| match e.kind() {
        std::io::ErrorKind::AddrInUse => anyhow::anyhow!(
            "{what} address {addr} is already in use: stop the other program (see `ss -ltnp`) or choose another port with --listen"
        ),
        std::io::ErrorKind::PermissionDenied => anyhow::anyhow!(
            "no permission to listen on {addr}: ports below 1024 need CAP_NET_BIND_SERVICE (the packaged service has it), or choose a port above 1024 with --listen"
        ),
        _ => anyhow::anyhow!("cannot listen on {addr}: {e}"),
    })
}

/// Logs every URL the hub answers at and, before setup, where to start.
fn log_reachable(
    config: &Config,
    port: u16,
    mdns_up: bool,
    cert_names: &[String],
    setup_needed: bool,
) {
    let interfaces = if config.listen.ip().is_unspecified() {
        crate::urls::interface_addresses()
    } else {
        Vec::new()
    };
    let mdns_host = mdns_up.then_some(config.mdns.host_name.as_str());
    let reach =
        crate::urls::reachable(config.listen.ip(), port, &interfaces, mdns_host, cert_names);
    for r in &reach {
        if r.in_certificate {
            tracing::info!("reachable at {} ({})", r.url, r.via);
        } else {
            tracing::info!(
                "reachable at {} ({}; the certificate does not name this address: add it to tls.extra_names to avoid a name warning)",
                r.url,
                r.via
            );
        }
    }
    if !mdns_up {
        tracing::info!("{} is not advertised (mDNS is off)", config.mdns.host_name);
    }
    if let Some(first) = reach.first().filter(|_| setup_needed) {
        tracing::info!("no account exists yet: open {}/setup", first.url);
    }
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    let e = Error::not_found(format!("nothing here: {} {}", req.method(), req.path()));
    http::error_response(&req, &e)
}

fn query_error(err: actix_web::error::QueryPayloadError, _: &HttpRequest) -> actix_web::Error {
    Error::new(
        Code::InvalidQuery,
        format!("the query string is not valid: {err}"),
    )
    .into()
}

fn form_error(err: actix_web::error::UrlencodedError, _: &HttpRequest) -> actix_web::Error {
    match err {
        actix_web::error::UrlencodedError::Overflow { .. } => {
            Error::too_large("the form is too large").into()
        }
        other => Error::new(Code::InvalidForm, format!("the form is not valid: {other}")).into(),
    }
}

fn path_error(err: actix_web::error::PathError, _: &HttpRequest) -> actix_web::Error {
    Error::not_found(format!("no such resource: {err}")).into()
}

/// The plain-HTTP listener's answer: pages are sent to HTTPS, on the host
/// the client asked for only when the hub's certificate names it (the
/// `Host` header, never `X-Forwarded-Host`), else on the hub's own name, so
/// nobody can make the hub point a browser elsewhere; the APIs get `403`,
/// since redirecting would invite a client to send its body in clear text
/// first and again after the redirect.
fn redirect_answer(req: &HttpRequest, hosts: &[String], fallback: &str, port: u16) -> HttpResponse {
    let path = req.uri().path();
    if ["/api", "/toy"]
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")))
    {
        return http::error_response(
            req,
            &Error::new(
                crate::error::Code::HttpsRequired,
                "use HTTPS: the hub's APIs do not answer over plain HTTP",
            ),
        );
    }
    let asked = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(host_of);
    let host = asked
        .filter(|h| hosts.iter().any(|n| n.eq_ignore_ascii_case(h)))
        .unwrap_or_else(|| fallback.to_owned());
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    let path_and_query = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let target = if port == 443 {
        format!("https://{host}{path_and_query}")
    } else {
        format!("https://{host}:{port}{path_and_query}")
    };
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, target))
        .finish()
}

/// The host name or address of a `Host` header, without its port or the
/// brackets of an IPv6 address, in lower case.
fn host_of(h: &str) -> String {
    let name = match h.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => h.split(':').next().unwrap_or(""),
    };
    name.to_ascii_lowercase()
}

/// The HTTPS listener, composed by hand rather than with
/// `HttpServer::listen_rustls_0_23` so that each accepted connection first
/// passes the per-address caps of [`http::limits`] (before any TLS work),
/// and the handshake's end is counted. Otherwise as actix builds it: two
/// workers, rustls, HTTP/1.1, `on_connect` copying the client certificate.
fn https_server(
    state: web::Data<AppState>,
    listener: TcpListener,
    tls: rustls::ServerConfig,
) -> anyhow::Result<Server> {
    use actix_http::TlsAcceptorConfig;
    use actix_http::{HttpService, KeepAlive};
    use actix_service::{
        IntoServiceFactory, Service, ServiceFactoryExt, apply_fn_factory, map_config,
    };
    use actix_tls::accept::rustls_0_23::TlsStream;
    use actix_web::rt::net::TcpStream;
    use http::limits::{self, ConnLimits};

    actix_tls::accept::max_concurrent_tls_connect(limits::MAX_HANDSHAKES_PER_WORKER);
    let addr = listener.local_addr()?;
    let conn_limits = ConnLimits::default();
    let server = actix_server::Server::build()
        // run_until_stopped handles SIGTERM and SIGINT: long-polls must be
        // answered before the workers stop.
        .disable_signals()
        .workers(2)
        .shutdown_timeout(5)
        .max_concurrent_connections(limits::MAX_CONNECTIONS_PER_WORKER)
        .worker_max_blocking_threads(limits::BLOCKING_THREADS_PER_WORKER)
        .listen("hearth-https", listener, move || {
            let st = state.clone();
            let app = App::new()
                .app_data(st.clone())
                .app_data(http::HtmlErrors(crate::web::errors::html_response))
                .app_data(web::QueryConfig::default().error_handler(query_error))
                .app_data(
                    web::FormConfig::default()
                        .limit(16 * 1024)
                        .error_handler(form_error),
                )
                .app_data(web::PathConfig::default().error_handler(path_error))
                .wrap(from_fn(crate::web::errors::in_layout))
                .wrap(from_fn(http::head_without_body))
                .wrap(from_fn(http::lan_guard))
                .wrap(from_fn(http::compact_headers))
                .configure(|cfg| {
                    let mut r = Routes::new(cfg);
                    crate::web::register(&mut r);
                    crate::toy_api::register(&mut r);
                })
                .default_service(web::to(not_found));
            let done = conn_limits.clone();
            let events = st.events.clone();
            let http = HttpService::build()
                // `Expect: 100-continue` with a body over the endpoint's
                // limit: 413 instead of 100 Continue.
                .expect(actix_service::fn_service(
                    |req: actix_http::Request| async move {
                        match limits::refuse_expected_body(&req, body_limit(req.path())) {
                            Some(refusal) => Err(refusal),
                            None => Ok(req),
                        }
                    },
                ))
                // At shutdown, idle keep-alive connections close at once.
                .graceful_shutdown_signal(move || events.shutdown())
                .keep_alive(KeepAlive::Timeout(limits::KEEP_ALIVE))
                .client_request_timeout(limits::REQUEST_HEAD_TIMEOUT)
                .client_disconnect_timeout(Duration::from_secs(1))
                .on_connect_ext(move |io: &TlsStream<TcpStream>, ext| {
                    if let Ok(peer) = io.get_ref().0.peer_addr() {
                        done.handshake_done(peer);
                    }
                    crate::toy_api::identity::on_connect(io as &dyn std::any::Any, ext);
                })
                .finish(map_config(
                    app.into_factory()
                        .map_err(|e: actix_web::Error| e.error_response()),
                    move |_| {
                        actix_web::dev::AppConfig::__priv_test_new(true, addr.to_string(), addr)
                    },
                ))
                .rustls_0_23_with_config(
                    tls.clone(),
                    TlsAcceptorConfig::default().handshake_timeout(limits::HANDSHAKE_TIMEOUT),
                );
            let caps = conn_limits.clone();
            apply_fn_factory(http, move |io: TcpStream, srv| {
                // Over its address's cap, the connection is closed unread.
                let admission = caps.admit(io.peer_addr().ok());
                let fut = admission.as_ref().map(|_| srv.call(io));
                async move {
                    let _held = admission;
                    match fut {
                        Some(f) => f.await,
                        None => Ok(()),
                    }
                }
            })
        })?
        .run();
    Ok(server)
}

/// The body limit of the endpoint at `path`, as its handler enforces it
/// (for answering `Expect: 100-continue`; a path without a body limit of
/// its own takes JSON's). The handlers' own checks stay the authority.
fn body_limit(path: &str) -> usize {
    if path == "/toy/v1/recordings" {
        crate::messaging::TOY_LIMIT
    } else if path.starts_with("/api/v1/toys/") && path.ends_with("/messages") {
        crate::messaging::PARENT_LIMIT
    } else if path.starts_with("/toy/v1/pair") {
        crate::toy_api::pair::PAIR_LIMIT
    } else if path == "/api/v1/backups/check" || path == "/api/v1/setup/restore" {
        crate::web::data::BACKUP_LIMIT
    } else {
        http::JSON_LIMIT
    }
}

impl Application {
    /// Builds with the system clock.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    /// Builds with the given clock (tests move time with a manual one).
    pub async fn build_with_clock(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        // Bind before touching the data directory: a port in use must not
        // leave a new database, CA and setup code behind.
        let listener = bind(config.listen, "the HTTPS")?;
        let port = listener.local_addr()?.port();
        let redirect_listener = match config.redirect_http_listen {
            Some(a) => Some(bind(a, "the HTTP redirect")?),
            None => None,
        };
        let data_dir = crate::datadir::DataDir::new(&config.data_dir);
        data_dir.prepare()?;
        let root = config.data_dir.clone();
        let store = tokio::task::spawn_blocking(move || Store::open(&root))
            .await?
            .context("cannot open the database")?;
        let names = crate::pki::server_names(
            &config.mdns.host_name,
            config.listen.ip(),
            &config.tls.extra_names,
        );
        let (dir, now, cert_names) = (config.data_dir.clone(), clock.now(), names.clone());
        let pki = tokio::task::spawn_blocking(move || HubPki::load_or_create(&dir, &names, now))
            .await?
            .context("cannot prepare the hub's certificates")?;
        let pki = Arc::new(pki);
        let has_admin = store.read(store::users::any_admin).await?;
        let setup_code = crate::accounts::setup_code_at_start(&data_dir, has_admin, clock.unix())
            .context("cannot write the setup-code file")?;
        let household = store
            .read(store::household::get)
            .await?
            .map(|h| h.name)
            .unwrap_or_else(|| "Hearth".into());
        let discovery = if config.mdns.enabled {
            let advert = HubAdvert {
                instance: household,
                host: config.mdns.host_name.clone(),
                port,
                ca_sha256: pki.ca_sha256(),
            };
            // A host name the hub announces is certified first: a toy that
            // learns `hearth-2.local` from mDNS finds it in the certificate.
            let certify: crate::discovery::CertifyHost = {
                let (pki, clock) = (pki.clone(), clock.clone());
                Arc::new(move |host: &str| {
                    pki.set_host_name(host, clock.now())
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                })
            };
            match Discovery::start(
                advert,
                &DiscoveryOptions {
                    interfaces: crate::discovery::interfaces_for(
                        config.listen.ip(),
                        &config.mdns.interfaces,
                        &if_addrs::get_if_addrs()
                            .unwrap_or_default()
                            .into_iter()
                            .map(|i| (i.name.clone(), i.ip()))
                            .collect::<Vec<_>>(),
                    ),
                },
                certify,
            ) {
                Ok(d) => Some(d),
                Err(e) => {
                    tracing::warn!(error = %e, "mDNS is off: toys must be given the hub's address by hand");
                    None
                }
            }
        } else {
            None
        };
        log_reachable(
            &config,
            port,
            discovery.is_some(),
            &cert_names,
            setup_code.is_some(),
        );
        if let Some((code, _)) = &setup_code {
            tracing::info!("setup code: {code}");
        }
        let tls = pki.server_config()?;
        let state = web::Data::new(AppState {
            config,
            store,
            pki,
            clock,
            events: Events::new(),
            pairings: Pairings::default(),
            accounts: crate::accounts::Accounts::new(setup_code),
            discovery,
            mqtt: crate::mqtt::Link::default(),
        });
        let server = https_server(state.clone(), listener, tls)?;
        let st = state.clone();
        let redirect_port = match &redirect_listener {
            Some(l) => Some(l.local_addr()?.port()),
            None => None,
        };
        let (hosts, fallback) = (cert_names.clone(), state.config.mdns.host_name.clone());
        let redirect = match redirect_listener {
            // Behind the same LAN guard: no connection from outside the home.
            Some(l) => Some(
                HttpServer::new(move || {
                    let (hosts, fallback) = (hosts.clone(), fallback.clone());
                    App::new()
                        .app_data(st.clone())
                        .wrap(from_fn(http::lan_guard))
                        .default_service(web::to(move |req: HttpRequest| {
                            let answer = redirect_answer(&req, &hosts, &fallback, port);
                            async move { answer }
                        }))
                })
                .workers(1)
                .listen(l)?
                .run(),
            ),
            None => None,
        };
        Ok(Self {
            port,
            redirect_port,
            server,
            redirect,
            state,
        })
    }

    /// The plain-HTTP redirect port actually bound, when there is one.
    pub fn redirect_port(&self) -> Option<u16> {
        self.redirect_port
    }

    /// The HTTPS port actually bound.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The shared services (tests drive background jobs through it).
    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// Serves until a shutdown signal (SIGINT or SIGTERM).
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let state = self.state.clone();
        let jobs = tokio::spawn(background_jobs(state.clone()));
        // The publisher ends by itself at shutdown (it says `offline` first).
        let mqtt = tokio::spawn(crate::mqtt::run(state.clone().into_inner()));
        let relay_jobs = tokio::spawn(relay_jobs(state.clone()));
        let relay = state
            .discovery
            .as_ref()
            .map(|d| tokio::spawn(relay_discovery(d.subscribe(), state.events.clone())));
        if let Some(r) = self.redirect {
            tokio::spawn(r);
        }
        notify_systemd_ready();
        let handle = self.server.handle();
        let events = state.events.clone();
        let signals = tokio::spawn(async move {
            wait_for_stop_signal().await;
            tracing::info!("stopping: answering parked long-polls and closing connections");
            events.begin_shutdown();
            handle.stop(true).await;
        });
        let res = self.server.await;
        signals.abort();
        jobs.abort();
        let _ = tokio::time::timeout(Duration::from_secs(2), mqtt).await;
        relay_jobs.abort();
        if let Some(r) = relay {
            r.abort();
        }
        if let Some(d) = state.discovery.clone() {
            // Goodbye packets take up to two seconds; not on an async thread.
            let _ = tokio::task::spawn_blocking(move || d.shutdown()).await;
        }
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        res.context("the web server stopped with an error")
    }
}

/// SIGTERM (systemd) or SIGINT (Ctrl-C).
async fn wait_for_stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn notify_systemd_ready() {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    if let Some(period) = sd_notify::watchdog_enabled() {
        let every = period / 2;
        tokio::spawn(async move {
            let mut t = tokio::time::interval(every);
            loop {
                t.tick().await;
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            }
        });
    }
}

/// Tells open pages about toys appearing on or leaving the network.
async fn relay_discovery(
    mut rx: tokio::sync::broadcast::Receiver<crate::discovery::DiscoveryEvent>,
    events: Events,
) {
    use crate::discovery::DiscoveryEvent;
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let (change, toy_id) = match rx.recv().await {
            Ok(DiscoveryEvent::Appeared(t)) => (ToyChange::Discovered, t.toy_id),
            Ok(DiscoveryEvent::Updated(t)) => (ToyChange::Discovered, t.toy_id),
            Ok(DiscoveryEvent::Gone(id)) => (ToyChange::Gone, id),
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return,
        };
        events.publish(PageEvent::toy(change, &toy_id));
    }
}

/// Replaces the server certificate when it has fewer than
/// [`crate::pki::LEAF_RENEW_DAYS`] days left (the hourly job calls it; so
/// can tests, after moving the clock). Returns the new end when it renewed.
pub async fn renew_server_certificate(state: &AppState) -> Option<time::OffsetDateTime> {
    let (pki, now) = (state.pki.clone(), state.clock.now());
    match tokio::task::spawn_blocking(move || pki.renew_if_due(now)).await {
        Ok(Ok(renewed)) => renewed,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot renew the server certificate; the hub tries again in an hour");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "the certificate renewal task failed");
            None
        }
    }
}

/// The relay's rounds (`relay::Worker::tick`): share expiry, retried
/// deletes, and replies looked for every `poll_seconds`. Once a second, so
/// an expiry or a retry is never late by more than that; a round with
/// relay off reads one row.
async fn relay_jobs(state: web::Data<AppState>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut worker = crate::relay::Worker::default();
    loop {
        tick.tick().await;
        if let Err(e) = worker.tick(&state).await {
            tracing::warn!(error = %e, "a relay round failed");
        }
    }
}

/// Certificate renewal, retention sweeps (messages, ledger), session
/// purge, scheduled backups and the online/offline tracker.
async fn background_jobs(state: web::Data<AppState>) {
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    let mut tracker = crate::toys::Tracker::default();
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        n += 1;
        if n % 120 == 1 {
            renew_server_certificate(&state).await;
            if let Err(e) = crate::messaging::retention_sweep(&state).await {
                tracing::warn!(error = %e, "retention sweep failed");
            }
            if let Err(e) = crate::accounts::purge_sessions(&state).await {
                tracing::warn!(error = %e, "session purge failed");
            }
            match crate::data::backup::scheduled(&state).await {
                Ok(Some(file)) => {
                    tracing::info!(file = %file.display(), "scheduled backup written")
                }
                Ok(None) => {}
                Err(e) => tracing::error!("the scheduled backup failed: {e:#}"),
            }
            if let Err(e) = crate::ledger::retention_sweep(&state.store, state.now()).await {
                tracing::warn!(error = %e, "ledger retention failed");
            }
        }
        crate::accounts::renew_setup_code(&state).await;
        if let Err(e) = tracker.tick(&state).await {
            tracing::warn!(error = %e, "the online/offline tracker failed");
        }
    }
}
