//! The gate's rules as scenarios, each written once as `async fn scenario(gate: Gate)` and run
//! against both backends by [`on_both!`]: `gate::scenarios::in_process::<scenario>` on
//! [`Gate::in_process`], `gate::scenarios::in_redis::<scenario>` on [`Gate::new`] with the Redis
//! of `REDIS_URL` (else `redis://127.0.0.1:6379/0`; databases 11 to 15 are refused), under a key
//! prefix of its own that is deleted at the end, passed or failed.
//!
//! The waits are short (a few hundred milliseconds) and real: the Redis backend keeps time by
//! Redis's clock. Only lower bounds are asserted on how long something took, so a loaded machine
//! makes a scenario slower, not wrong.

use std::{future::Future, time::Duration};

use tokio::time::{Instant, sleep};

use super::{Gate, Pauses, Permit, State, Why, cut_note, decide::WINDOW};
use crate::{
    config::Settings,
    domain::ErrorClass,
    mail::{Provider, SendError},
};

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// The waits of every scenario's gate.
fn pauses() -> Pauses {
    Pauses {
        configuration: ms(400),
        probe_interval: ms(300),
        throttle: ms(300),
        probe_lease: ms(500),
        max: ms(600),
    }
}

/// A provider that takes `per_second` requests a second (0: any number), with credentials
/// `fingerprint`. Two providers with the same name stand for two processes.
fn provider(per_second: u32, fingerprint: &str) -> Provider {
    let settings = Settings::load_from(
        &crate::kinds::defaults(),
        None,
        &[("HERALD__MAIL__PROVIDERS".into(), "[\"null\"]".into())],
    )
    .expect("the null provider's settings");
    let mut p = Provider::build_all(&settings.mail)
        .expect("the null provider")
        .remove(0);
    p.per_second = per_second;
    p.fingerprint = fingerprint.to_owned();
    p
}

fn go(count: usize) -> Permit {
    Permit::Go {
        probe: false,
        count,
    }
}

const PROBE: Permit = Permit::Go {
    probe: true,
    count: 1,
};

/// The wait and its reason, or a panic naming the permit.
fn wait_of(permit: Permit) -> (Duration, Why) {
    match permit {
        Permit::Wait { wait, why } => (wait, why),
        go => panic!("expected a wait, got {go:?}"),
    }
}

async fn the_window_admits_its_limit_in_a_second_then_waits(gate: Gate) {
    let p = provider(3, "fp1");
    let first = Instant::now();
    assert_eq!(gate.try_acquire(&p, 2).await.unwrap(), go(2));
    // Only the room left in the window, whatever is asked for.
    assert_eq!(gate.try_acquire(&p, 5).await.unwrap(), go(1));
    let (wait, why) = wait_of(gate.try_acquire(&p, 1).await.unwrap());
    assert_eq!(why, Why::Rate);
    // Until the oldest request leaves the window: one second and the guard after it.
    assert!(wait <= WINDOW, "{wait:?}");
    assert!(wait + first.elapsed() + ms(50) >= WINDOW, "{wait:?}");
    assert_eq!(gate.state(&p).await.unwrap(), State::Ok);
    // A wait longer than the budget is handed back, not slept through.
    let (_, why) = wait_of(gate.acquire(&p, 1, ms(100)).await.unwrap());
    assert_eq!(why, Why::Rate);
    // One that fits is slept through: the next request goes once the window has room.
    assert_eq!(
        gate.acquire(&p, 1, Duration::from_secs(3)).await.unwrap(),
        go(1)
    );
    assert!(first.elapsed() + ms(50) >= WINDOW, "{:?}", first.elapsed());
    // A provider without a limit takes any number, any number of times.
    let free = provider(0, "fp1");
    for _ in 0..3 {
        assert_eq!(gate.try_acquire(&free, 50).await.unwrap(), go(50));
    }
}

async fn a_rate_limit_holds_every_caller_for_its_retry_after_cut_at_max_pause(gate: Gate) {
    let (p, other) = (provider(0, "fp1"), provider(0, "fp2"));
    let limited = |message: &str, wait| {
        SendError::new(ErrorClass::RateLimited, Some(429), message).with_wait(Some(wait))
    };
    let set = Instant::now();
    let paused = gate.failed(&p, &limited("slow down", ms(500)), false).await;
    assert_eq!(paused.unwrap(), Some(ms(500)));
    let slow_down = Why::Paused {
        class: ErrorClass::RateLimited,
        message: "slow down".into(),
    };
    // Every process, whatever its credentials.
    for q in [&p, &other] {
        let (wait, why) = wait_of(gate.try_acquire(q, 1).await.unwrap());
        assert_eq!(why, slow_down);
        assert!(!why.fails_over());
        assert!(
            wait <= ms(500) && wait + set.elapsed() + ms(50) >= ms(500),
            "{wait:?}"
        );
    }
    // A shorter pause leaves the longer one there.
    let shorter = gate.failed(&p, &limited("again", ms(50)), false).await;
    assert_eq!(shorter.unwrap(), Some(ms(50)));
    match gate.state(&other).await.unwrap() {
        State::Paused {
            class: ErrorClass::RateLimited,
            message,
            remaining,
        } => assert!(
            message == "slow down" && remaining <= ms(500),
            "{message} {remaining:?}"
        ),
        state => panic!("{state:?}"),
    }
    // A caller that may wait that long sleeps through it, then goes.
    assert_eq!(
        gate.acquire(&p, 1, Duration::from_secs(3)).await.unwrap(),
        go(1)
    );
    assert!(set.elapsed() + ms(50) >= ms(500), "{:?}", set.elapsed());
    assert_eq!(gate.state(&p).await.unwrap(), State::Ok);
    // Thirty days asked for: paused for mail.max_pause, and the message says so.
    let month = Duration::from_secs(30 * 24 * 3600);
    let cut = gate.failed(&p, &limited("slow down", month), false).await;
    assert_eq!(cut.unwrap(), Some(ms(600)));
    let message = format!("slow down{}", cut_note(month, ms(600)));
    let (wait, why) = wait_of(gate.try_acquire(&other, 1).await.unwrap());
    assert!(wait <= ms(600), "{wait:?}");
    let cut = Why::Paused {
        class: ErrorClass::RateLimited,
        message: message.clone(),
    };
    assert_eq!(why, cut);
    match gate.state(&p).await.unwrap() {
        State::Paused {
            class: ErrorClass::RateLimited,
            message: said,
            remaining,
        } => assert!(
            said == message && remaining <= ms(600),
            "{said} {remaining:?}"
        ),
        state => panic!("{state:?}"),
    }
}

async fn a_configuration_pause_holds_the_same_credentials_only(gate: Gate) {
    let (p, fixed) = (provider(0, "fp1"), provider(0, "fp2"));
    let refused = SendError::new(ErrorClass::Configuration, Some(401), "bad key");
    let set = Instant::now();
    assert_eq!(
        gate.failed(&p, &refused, false).await.unwrap(),
        Some(ms(400))
    );
    let bad_key = Why::Paused {
        class: ErrorClass::Configuration,
        message: "bad key".into(),
    };
    let (wait, why) = wait_of(gate.try_acquire(&p, 1).await.unwrap());
    assert!(wait <= ms(400), "{wait:?}");
    assert_eq!(why, bad_key);
    // It fails over: `acquire` hands it back at once rather than sleep through it.
    assert!(why.fails_over());
    let (_, why) = wait_of(gate.acquire(&p, 1, Duration::from_secs(3)).await.unwrap());
    assert_eq!(why, bad_key);
    // A process with other credentials goes.
    assert_eq!(gate.try_acquire(&fixed, 1).await.unwrap(), go(1));
    assert_eq!(gate.state(&fixed).await.unwrap(), State::Ok);
    let state = gate.state(&p).await.unwrap();
    assert!(state.needs_operator(), "{state:?}");
    assert!(
        matches!(&state, State::Paused { class: ErrorClass::Configuration, message, remaining } if message == "bad key" && *remaining <= ms(400)),
        "{state:?}"
    );
    // Until the pause expires.
    sleep(ms(400).saturating_sub(set.elapsed()) + ms(20)).await;
    assert_eq!(gate.try_acquire(&p, 1).await.unwrap(), go(1));
    assert_eq!(gate.state(&p).await.unwrap(), State::Ok);
}

async fn a_configuration_error_is_logged_once_a_minute(gate: Gate) {
    let (p, other) = (provider(0, "fp1"), provider(0, "fp2"));
    assert!(gate.first_log(&p).await);
    assert!(!gate.first_log(&p).await);
    // Whatever the credentials: the minute is the provider's.
    assert!(!gate.first_log(&other).await);
    // A configuration error met now is not logged again.
    let refused = SendError::new(ErrorClass::Configuration, Some(401), "bad key");
    gate.failed(&p, &refused, false).await.unwrap();
    assert!(!gate.first_log(&p).await);
}

async fn the_circuit_opens_lets_one_probe_through_and_closes_on_an_answer(gate: Gate) {
    let p = provider(0, "fp1");
    let down = SendError::new(ErrorClass::Transient, None, "connection refused").unreachable();
    let interval = ms(300);
    assert_eq!(gate.failed(&p, &down, false).await.unwrap(), Some(interval));
    let (wait, why) = wait_of(gate.try_acquire(&p, 3).await.unwrap());
    assert_eq!(why, Why::Circuit);
    assert!(why.fails_over() && wait <= interval, "{wait:?}");
    assert_eq!(gate.state(&p).await.unwrap(), State::Circuit);
    // After the pause, exactly one of the callers probes; the others wait for it.
    sleep(interval + ms(20)).await;
    assert_eq!(gate.state(&p).await.unwrap(), State::Circuit);
    let one_probe = async || {
        let asks = (0..4).map(|_| gate.try_acquire(&p, 3));
        let permits: Vec<Permit> = futures::future::join_all(asks)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        let probes = permits.iter().filter(|&q| *q == PROBE).count();
        assert_eq!(probes, 1, "{permits:?}");
        for q in permits.into_iter().filter(|q| *q != PROBE) {
            let (wait, why) = wait_of(q);
            assert!(why == Why::Circuit && wait <= interval, "{why:?} {wait:?}");
        }
    };
    one_probe().await;
    assert_eq!(gate.state(&p).await.unwrap(), State::Circuit);
    // An answer to someone else's request does not close it; the probe's does.
    gate.answered(&p, false).await.unwrap();
    assert_eq!(gate.state(&p).await.unwrap(), State::Circuit);
    gate.answered(&p, true).await.unwrap();
    assert_eq!(gate.state(&p).await.unwrap(), State::Ok);
    assert_eq!(gate.try_acquire(&p, 3).await.unwrap(), go(3));
    // It opens again; the probe fails: paused again, then one probe again.
    gate.failed(&p, &down, false).await.unwrap();
    sleep(interval + ms(20)).await;
    assert_eq!(gate.try_acquire(&p, 3).await.unwrap(), PROBE);
    assert_eq!(gate.failed(&p, &down, true).await.unwrap(), Some(interval));
    let (_, why) = wait_of(gate.try_acquire(&p, 1).await.unwrap());
    assert_eq!(why, Why::Circuit);
    assert_eq!(gate.state(&p).await.unwrap(), State::Circuit);
    sleep(interval + ms(20)).await;
    one_probe().await;
    // A probe that gets an answer, even a refusal of the email, closes it.
    let refused = SendError::permanent("no such mailbox");
    assert_eq!(gate.failed(&p, &refused, true).await.unwrap(), None);
    assert_eq!(gate.state(&p).await.unwrap(), State::Ok);
    assert_eq!(gate.try_acquire(&p, 2).await.unwrap(), go(2));
}

async fn a_probe_that_never_answers_gives_way_after_its_lease(gate: Gate) {
    let p = provider(0, "fp1");
    let down = SendError::new(ErrorClass::Transient, None, "connection refused").unreachable();
    gate.failed(&p, &down, false).await.unwrap();
    sleep(ms(320)).await;
    let leased = Instant::now();
    assert_eq!(gate.try_acquire(&p, 1).await.unwrap(), PROBE);
    // The prober dies without an answer: the others wait at most a probe interval at a time...
    let (wait, why) = wait_of(gate.try_acquire(&p, 1).await.unwrap());
    assert!(why == Why::Circuit && wait <= ms(300), "{why:?} {wait:?}");
    // ...and after the lease, one of them probes.
    sleep(ms(500).saturating_sub(leased.elapsed()) + ms(20)).await;
    assert_eq!(gate.try_acquire(&p, 1).await.unwrap(), PROBE);
    let (_, why) = wait_of(gate.try_acquire(&p, 1).await.unwrap());
    assert_eq!(why, Why::Circuit);
}

async fn a_probe_that_the_window_refuses_frees_its_lease(gate: Gate) {
    let p = provider(1, "fp1");
    assert_eq!(gate.try_acquire(&p, 1).await.unwrap(), go(1));
    let down = SendError::new(ErrorClass::Transient, None, "connection refused").unreachable();
    gate.failed(&p, &down, false).await.unwrap();
    sleep(ms(320)).await;
    // The window is still full: no probe, and no lease kept for one.
    for _ in 0..2 {
        let (_, why) = wait_of(gate.try_acquire(&p, 1).await.unwrap());
        assert_eq!(why, Why::Rate);
    }
    assert_eq!(
        gate.acquire(&p, 1, Duration::from_secs(3)).await.unwrap(),
        PROBE
    );
}

/// Runs `scenario` on a Redis gate under a prefix of its own, then deletes that prefix's keys.
async fn on_redis<F>(name: &str, scenario: impl FnOnce(Gate) -> F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let url = std::env::var("REDIS_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "redis://127.0.0.1:6379/0".to_owned());
    let client = redis::Client::open(url.as_str()).expect("REDIS_URL is a Redis URL");
    let db = client.get_connection_info().redis_settings().db();
    assert!(
        !(11..=15).contains(&db),
        "REDIS_URL names database {db}: the tests never use databases 11 to 15"
    );
    let mut conn = match client.get_connection_manager().await {
        Ok(conn) => conn,
        Err(e) if std::env::var("HERALD_REQUIRE_SERVERS").as_deref() == Ok("1") => {
            panic!(
                "Redis at {url} is not reachable ({e}); start it (bash .ci/run does) or unset HERALD_REQUIRE_SERVERS to skip"
            )
        }
        Err(e) => {
            eprintln!(
                "\n!!!!!!!! SKIPPED: gate::scenarios::in_redis::{name}: Redis at {url} is not \
                 reachable ({e}); this test did not run. Start Redis (bash .ci/run does) or set \
                 REDIS_URL; set HERALD_REQUIRE_SERVERS=1 to make this a failure.\n"
            );
            return;
        }
    };
    let prefix = format!("herald-gate-test-{name}-{}", uuid::Uuid::new_v4().simple());
    let gate = Gate::new(conn.clone(), &prefix, pauses());
    let outcome = tokio::spawn(scenario(gate)).await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .expect("the scenario's keys");
    if !keys.is_empty() {
        redis::cmd("DEL")
            .arg(&keys)
            .query_async::<()>(&mut conn)
            .await
            .expect("the scenario's keys deleted");
    }
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// One test per scenario and backend.
macro_rules! on_both {
    ($($scenario:ident),* $(,)?) => {
        mod in_process {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario(super::Gate::in_process(super::pauses())).await;
                }
            )*
        }
        mod in_redis {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::on_redis(stringify!($scenario), super::$scenario).await;
                }
            )*
        }
    };
}

on_both!(
    the_window_admits_its_limit_in_a_second_then_waits,
    a_rate_limit_holds_every_caller_for_its_retry_after_cut_at_max_pause,
    a_configuration_pause_holds_the_same_credentials_only,
    a_configuration_error_is_logged_once_a_minute,
    the_circuit_opens_lets_one_probe_through_and_closes_on_an_answer,
    a_probe_that_never_answers_gives_way_after_its_lease,
    a_probe_that_the_window_refuses_frees_its_lease,
);
