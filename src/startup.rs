//! Builds the application from settings and runs it until told to stop: the seam tests boot.

use std::{future::Future, net::SocketAddr, sync::Arc};

use anyhow::Context;
use tokio::net::TcpListener;

use crate::{
    clock::Clock,
    config::{Home, Settings},
    gate::{Gate, Pauses},
    health::{Health, Names},
    http::{AppState, app},
    mail::{self, Provider},
    metrics::Metrics,
    queue::{self, Dispatcher, Queue},
    recorder::{Outcomes, Recorder},
    render::Templates,
    schedule::Planner,
    shutdown,
    store::Store,
    supervisor::{Faults, Supervisor},
    worker::{InHand, WorkerDeps},
};

/// A built Herald: connected, migrated, templates checked, HTTP port bound.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    state: AppState,
    deps: Arc<WorkerDeps>,
    outcomes: Outcomes,
}

impl Application {
    /// Checks the templates, creates and migrates the database, connects to Redis and the mail
    /// transport, and binds the HTTP port. Any problem stops here, before anything runs.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        Self::build_with_clock(settings, Clock::System).await
    }

    /// As [`Application::build`], with the clock that planning, dispatch and retries read.
    /// Tests pass a manual clock to walk through a day in seconds.
    pub async fn build_with_clock(settings: Settings, clock: Clock) -> anyhow::Result<Application> {
        let templates = Arc::new(Templates::from_settings(
            &settings,
            &crate::kinds::samples(),
        )?);
        // The workers' pool on PostgreSQL; the embedded file has its one writer.
        let workers = settings.servers().map_or(0, |s| s.max_connections);
        let store = Store::open(&settings.home, workers).await?;
        let (queue, gate) = match &settings.home {
            Home::Servers(servers) => {
                let redis = queue::connect(&servers.redis_url).await?;
                let queue = Queue::new(redis.clone(), &settings.queue);
                (queue, gate(redis, &settings))
            }
            // One process, one file: the state, the queue (apalis-sqlite) and the demo app in
            // it, the gate in the process.
            Home::Embedded { file } => {
                let queue = Queue::embedded(&store, &settings.queue).await?;
                tracing::info!(file = %file.display(), "embedded: state and queue in one SQLite file (set DATABASE_URL and REDIS_URL to run several processes on PostgreSQL and Redis)");
                (queue, in_process_gate(&settings))
            }
        };
        let store = crate::store::prepare(store, settings.source_url.as_ref()).await?;
        let providers = Provider::build_all(&settings.mail)?;
        if let Some(warning) = settings.mail.not_sending_warning() {
            tracing::warn!("{warning}");
        }
        let links = crate::unsubscribe::Links::from_settings(&settings);
        if links.is_none() {
            tracing::warn!("{}", crate::unsubscribe::NO_LINKS);
        }
        let listener = TcpListener::bind(settings.http_addr)
            .await
            .with_context(|| format!("cannot listen on {} (http.addr / HERALD_HTTP_ADDR); is another process using it?", settings.http_addr))?;
        let health = Health::new(if store.is_embedded() {
            Names::EMBEDDED
        } else {
            Names::SERVERS
        });
        let metrics = Metrics::new(
            &providers.iter().map(Provider::name).collect::<Vec<_>>(),
            &settings
                .schedules
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>(),
        );
        let job_size = queue::job_size(&providers);
        let (recorder, outcomes) = Recorder::new();
        let deps = Arc::new(WorkerDeps {
            // The workers alone on the main pool; every other part below on the reserved one,
            // so that busy workers never hold up planning, dispatch or the API.
            store: store.clone(),
            recorder,
            in_hand: InHand::new(settings.queue.concurrency),
            templates,
            providers: providers.clone(),
            gate: gate.clone(),
            retry_delays: settings.queue.retry_delays.clone(),
            max_attempts: i32::try_from(settings.queue.max_attempts).unwrap_or(i32::MAX),
            lease: settings.queue.lease,
            message_id_domain: settings.mail.from.domain().to_owned(),
            clock: clock.clone(),
            health: health.clone(),
            metrics: metrics.clone(),
            links: links.clone(),
        });
        let state = AppState {
            settings: Arc::new(settings),
            clock,
            planner: Planner::new(metrics.clone()),
            store: store.reserved(),
            queue,
            dispatcher: Dispatcher::new(job_size),
            providers: Arc::new(providers),
            gate,
            health,
            faults: Faults::default(),
            metrics,
            links,
            templates: deps.templates.clone(),
            failures: Default::default(),
            sessions: Default::default(),
        };
        Ok(Application {
            listener,
            state,
            deps,
            outcomes,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound socket has an address")
    }

    pub fn port(&self) -> u16 {
        self.address().port()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Runs the schedules, the dispatcher, the workers and the HTTP server until `stop` resolves;
    /// then stops fetching, lets in-flight sends finish within `shutdown.grace`, and returns.
    /// Each background part runs under the [`Supervisor`], which restarts it if it ends or
    /// panics; `/readyz` says which part is down meanwhile.
    pub async fn run_until_stopped(
        self,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Application {
            listener,
            state,
            deps,
            outcomes,
        } = self;
        let settings = state.settings.clone();
        let (trigger, shutdown) = shutdown::channel();
        let mut parts =
            Supervisor::new(state.health.clone(), shutdown.clone(), state.faults.clone());

        let s = state.clone();
        let down = shutdown.clone();
        parts.spawn("dispatcher", move || {
            s.dispatcher.clone().run(
                s.store.clone(),
                s.queue.clone(),
                s.settings.queue.clone(),
                s.clock.clone(),
                s.health.clone(),
                down.clone(),
            )
        });
        let s = state.clone();
        let down = shutdown.clone();
        parts.spawn("janitor", move || {
            queue::janitor(
                s.queue.clone(),
                s.store.clone(),
                s.health.clone(),
                down.clone(),
            )
        });
        let s = state.clone();
        let down = shutdown.clone();
        parts.spawn("retention", move || {
            crate::retention::run(
                s.store.clone(),
                s.settings.retention,
                s.clock.clone(),
                down.clone(),
            )
        });
        let s = state.clone();
        let down = shutdown.clone();
        parts.spawn("planner", move || {
            let dispatcher = s.dispatcher.clone();
            s.planner.clone().run(
                s.store.clone(),
                s.settings.schedules.clone(),
                s.settings.planner_tick.clone(),
                s.clock.clone(),
                Arc::new(move || dispatcher.nudge()),
                s.health.clone(),
                down.clone(),
            )
        });
        // Ends once the workers are gone (their handles closed the queue of outcomes), or a
        // while after the grace, should a handle outlive them.
        let store = deps.store.clone();
        let down = shutdown.clone();
        let grace = settings.shutdown_grace;
        parts.spawn("recorder", move || {
            let run = outcomes.clone().run(store.clone());
            let down = down.clone();
            async move {
                tokio::select! {
                    () = run => {}
                    () = async {
                        down.wait().await;
                        tokio::time::sleep(grace + std::time::Duration::from_secs(5)).await;
                    } => {}
                }
            }
        });
        let s = state.clone();
        let down = shutdown.clone();
        parts.spawn("workers", move || {
            let run = queue::run_workers(
                s.queue.clone(),
                s.store.clone(),
                deps.clone(),
                s.settings.queue.clone(),
                s.settings.shutdown_grace,
                s.health.clone(),
                down.clone(),
            );
            async move {
                if let Err(e) = run.await {
                    tracing::error!(error = crate::telemetry::chain(&e), "the workers stopped");
                }
            }
        });
        let http_shutdown = shutdown.clone();
        let server = tokio::spawn(async move {
            axum::serve(
                listener,
                app(state.clone(), crate::ui::router(state))
                    .into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .with_graceful_shutdown(async move { http_shutdown.wait().await })
            .await
        });
        tracing::info!(addr = %settings.http_addr, "Herald is running");

        stop.await;
        tracing::info!(grace = %humantime::format_duration(settings.shutdown_grace), "stopping: no new work, waiting for in-flight sends");
        trigger.trigger();
        parts.join().await;
        server
            .await
            .context("the HTTP task panicked")?
            .context("the HTTP server failed")?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// The gate in front of the providers, with its keys under the queue's name.
pub fn gate(redis: apalis_redis::ConnectionManager, settings: &Settings) -> Gate {
    Gate::new(redis, &settings.queue.name, pauses(settings))
}

/// The embedded home's gate: its state (rate limits, pauses, the circuit) in this process.
pub fn in_process_gate(settings: &Settings) -> Gate {
    Gate::in_process(pauses(settings))
}

/// How long the gate pauses a provider for each reason, from `[mail]`.
fn pauses(settings: &Settings) -> Pauses {
    let m = &settings.mail;
    Pauses {
        configuration: m.configuration_pause,
        probe_interval: m.probe_interval,
        throttle: m.throttle_pause,
        probe_lease: mail::send_timeout(m),
        max: m.max_pause,
    }
}

/// Resolves on SIGINT (ctrl-c) or SIGTERM (what `docker stop` sends).
pub async fn stop_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
