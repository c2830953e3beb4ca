//! `herald check`: validate the configuration, templates and connections, naming the fix for each problem.

use std::{process::ExitCode, time::Duration};

use crate::{
    config::{Home, ProviderSettings, Settings},
    gate::State,
    mail::Provider,
    queue::{self, Queue},
    render::Templates,
    source::Source,
    store::Store,
};

/// `herald check`: every problem, each with where it is and what to do.
pub async fn check() -> anyhow::Result<ExitCode> {
    let mut ok = true;
    let mut report = |name: &str, result: anyhow::Result<()>| match result {
        Ok(()) => println!("ok    {name}"),
        Err(e) => {
            ok = false;
            println!("FAIL  {name}: {}", crate::telemetry::chain(&e));
        }
    };
    let settings = match Settings::load(&crate::kinds::defaults()) {
        Ok(s) => {
            report("configuration", Ok(()));
            s
        }
        Err(e) => {
            report("configuration", Err(anyhow::anyhow!("{e}")));
            return Ok(ExitCode::FAILURE);
        }
    };
    match Templates::from_settings(&settings, &crate::kinds::samples()) {
        Ok(templates) => {
            report("templates", Ok(()));
            let catalog = templates.catalog();
            let default = catalog.tag(catalog.default_locale()).to_owned();
            for (locale, missing) in catalog.missing() {
                if missing.is_empty() {
                    println!("ok    messages {locale}: every message of {default}.ftl");
                } else {
                    println!(
                        "warn  messages {locale}: {} message(s) of {default}.ftl missing, sent in {default} instead until {locale}.ftl has them: {}",
                        missing.len(),
                        missing.join(", ")
                    );
                }
            }
        }
        Err(e) => report("templates", Err(e.into())),
    }
    let servers = settings.servers();
    match (&settings.home, servers) {
        (_, Some(servers)) => {
            let pg = async {
                let store = Store::connect(&servers.database_url, 1, false).await?;
                store.ping().await
            };
            report("postgresql", timeout(pg).await);
        }
        (Home::Embedded { file }, None) => report(
            &format!(
                "state: embedded, in {} (one process; PostgreSQL and Redis unused)",
                file.display()
            ),
            state_folder(file),
        ),
        (Home::Servers(_), None) => unreachable!("servers() is Some for Home::Servers"),
    }
    let source_name = settings
        .source_url
        .as_ref()
        .map_or("Herald's own database".to_owned(), ToString::to_string);
    let source = async {
        let url = match (&settings.source_url, &settings.home) {
            (Some(url), _) => url.expose().to_owned(),
            (None, Home::Servers(s)) => s.database_url.expose().to_owned(),
            (None, Home::Embedded { file }) => format!("sqlite://{}", file.display()),
        };
        let source = Source::connect(&url, 1).await?;
        crate::source::check::check(&source).await
    };
    match timeout(source).await {
        Ok(problems) if problems.is_empty() => report(
            &format!("source ({source_name}): herald_users, herald_tasks, herald_focus_sessions"),
            Ok(()),
        ),
        Ok(problems) => {
            for p in problems {
                report(
                    &format!("source {}", p.at),
                    Err(anyhow::anyhow!("{}", p.message)),
                );
            }
        }
        Err(e) => report(&format!("source ({source_name})"), Err(e)),
    }
    if let Some(servers) = servers {
        let redis = async {
            Queue::new(queue::connect(&servers.redis_url).await?, &settings.queue)
                .ping()
                .await
        };
        report("redis", timeout(redis).await);
    }
    for s in &settings.mail.providers {
        let p = match Provider::build(s, &settings.mail) {
            Ok(p) => p,
            Err(e) => {
                report(&format!("mail provider {} ({s})", s.name()), Err(e));
                continue;
            }
        };
        report(
            &format!("mail provider {} ({s})", p.name()),
            timeout(p.test_connection()).await,
        );
        // What the workers found out: a pause for a configuration problem names the fix.
        // Embedded, what the workers found out lives in the running process only.
        let Some(servers) = servers else { continue };
        let state = async {
            let redis = queue::connect(&servers.redis_url).await?;
            crate::startup::gate(redis, &settings).state(&p).await
        };
        match timeout(state).await {
            Ok(State::Ok) => {}
            Ok(s) if s.needs_operator() => {
                report(
                    &format!("mail provider {} (as the workers found it)", p.name()),
                    Err(anyhow::anyhow!("{}", s.describe())),
                );
            }
            Ok(s) => println!("note  mail provider {}: {}", p.name(), s.describe()),
            Err(e) => println!(
                "note  mail provider {}: state unknown: {}",
                p.name(),
                crate::telemetry::chain(&e)
            ),
        }
    }
    dkim(&settings.mail);
    if let Some(warning) = settings.mail.not_sending_warning() {
        println!("warn  {warning}");
    }
    if settings.unsubscribe.is_none() {
        println!("warn  {}", crate::unsubscribe::NO_LINKS);
    }
    if settings.api_token.is_none() {
        println!("note  http.api_token is empty: /api answers 403 until HERALD_API_TOKEN is set");
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// What DKIM signs, and the DNS record the key needs (the key itself loaded with the
/// configuration: a key that does not load is a configuration problem above).
fn dkim(mail: &crate::config::MailSettings) {
    let signs = mail
        .providers
        .iter()
        .any(|p| matches!(p, ProviderSettings::Smtp(_) | ProviderSettings::File(_)));
    match &mail.dkim {
        Some(d) => {
            println!(
                "ok    dkim: {} key loaded, signing SMTP and .eml emails as d={} s={}",
                d.algorithm, d.domain, d.selector
            );
            println!(
                "note  dkim: publish the DNS TXT record {} with the value \"{}\"",
                d.record_name(),
                d.dns_record
            );
            if !signs {
                println!(
                    "note  dkim: no provider uses the key: Resend signs its emails itself (set up its domain in Resend's dashboard)"
                );
            }
        }
        None if signs => println!(
            "note  mail.dkim is not set: SMTP emails go out unsigned unless the SMTP server signs them (README: DKIM)"
        ),
        None => {}
    }
}

/// `f`'s answer, or an error if it gives none within 10 s.
async fn timeout<T>(f: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within 10 s")))
}

/// The state file's folder exists or can be made, and is writable.
fn state_folder(file: &std::path::Path) -> anyhow::Result<()> {
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => std::path::PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot create {} ({e}); set state.file to a writable place",
            dir.display()
        )
    })?;
    let meta = std::fs::metadata(&dir)?;
    anyhow::ensure!(
        !meta.permissions().readonly(),
        "{} is read-only; set state.file to a writable place",
        dir.display()
    );
    Ok(())
}
