//! `berth run ENV [--keep] [--timeout D] -- CMD...`: a one-off command in a
//! pod copied from the current release's workload, output streamed, exit
//! code propagated, the pod deleted afterwards (also on Ctrl-C, timeout and
//! error) unless `--keep`.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use serde_json::json;

use crate::cli::{GlobalArgs, RunArgs};
use crate::cluster::exec::{self, Session};
use crate::cluster::{client, instance, pods, run_pod};
use crate::config::{Config, RunSettings};
use crate::error::BerthError;
use crate::interrupt::Interrupts;
use crate::output::Output;
use crate::rollout::Thresholds;
use crate::terminal;

/// Run a one-off command in the environment.
pub async fn run(global: &GlobalArgs, args: &RunArgs, out: &Output) -> anyhow::Result<()> {
    out.json_report(&json!({"environment": args.env}));
    let config = Config::load(&global.config)?;
    let env = config.environment(&args.env)?;
    let mut settings = match &args.workload {
        Some(workload) => RunSettings {
            workload: workload.clone(),
            container: None,
            timeout: env
                .run_settings(&args.env)
                .map_or(Duration::from_secs(3600), |s| s.timeout),
        },
        None => env.run_settings(&args.env)?,
    };
    if args.container.is_some() {
        settings.container.clone_from(&args.container);
    }
    let timeout = args.timeout.unwrap_or(settings.timeout);
    let client = client::connect(env.context.as_deref()).await?;
    let pod = OneOff {
        pods: pods::api(&client, &env.namespace),
        instance: instance(&config.app, &args.env),
        key: format!("environments.{}.run (or --workload)", args.env),
        thresholds: Thresholds::from(&env.rollout),
    };
    let template = pods::deployment(&client, &env.namespace, &settings.workload, &pod.key).await?;
    let code = pod
        .run(
            &settings,
            template.spec.map(|s| s.template),
            args.command.clone(),
            timeout,
            args.keep,
            out,
        )
        .await?;
    super::psql::exited(code)
}

/// Where and how one-off pods of an environment run.
pub(super) struct OneOff {
    /// The environment's pods.
    pub pods: Api<Pod>,
    /// `<app>-<env>`, the start of pod names and the run label's value.
    pub instance: String,
    /// The setting that chose the workload, for messages.
    pub key: String,
    /// When a pod that cannot be scheduled counts as failed.
    pub thresholds: Thresholds,
}

impl OneOff {
    /// Start a pod from `template`, run `command` in it within `timeout`,
    /// delete the pod unless `keep`; the command's exit code. berth's own
    /// lines go to `out`.
    pub async fn run(
        &self,
        settings: &RunSettings,
        template: Option<k8s_openapi::api::core::v1::PodTemplateSpec>,
        command: Vec<String>,
        timeout: Duration,
        keep: bool,
        out: &Output,
    ) -> anyhow::Result<i32> {
        let template = template.unwrap_or_default();
        let spec = template.spec.clone().unwrap_or_default();
        let container = pods::container(&spec, settings.container.as_deref(), &self.key)?;
        let name = run_pod::pod_name(&self.instance);
        // The pod outlives the timeout a little, so the command's own end is seen first.
        let lifetime = timeout.saturating_add(Duration::from_secs(60));
        let pod = run_pod::build(
            &template,
            &name,
            &self.instance,
            &settings.workload,
            &container,
            lifetime,
        )?;
        let image = spec
            .containers
            .iter()
            .find(|c| c.name == container)
            .and_then(|c| c.image.clone())
            .unwrap_or_default();
        out.info(&format!(
            "starting pod {name} ({image}, from {})",
            settings.workload
        ));
        let mut interrupts = Interrupts::listen()?;
        let work = async {
            run_pod::start(&self.pods, &pod, &container, self.thresholds).await?;
            let session = Session {
                pod: &name,
                container: Some(&container),
                command,
                settings: None,
                tty: terminal::is_interactive(),
            };
            exec::run(&self.pods, session).await
        };
        let result = tokio::select! {
            result = tokio::time::timeout(timeout, work) => result.unwrap_or_else(|_| {
                Err(BerthError::TimedOut(format!(
                    "pod {name}: the command did not finish within {}s (--timeout)",
                    timeout.as_secs()
                ))
                .into())
            }),
            () = interrupts.recv() => Err(BerthError::Interrupted.into()),
        };
        if keep {
            out.info(&format!(
                "kept pod {name}; `kubectl -n {ns} exec -it {name} -- sh` to look inside, \
                 `kubectl -n {ns} delete pod {name}` when done",
                ns = self.pods.namespace().unwrap_or_default()
            ));
        } else if let Err(error) = run_pod::delete(&self.pods, &name).await {
            out.warn(&format!("{error:#}; delete pod {name} by hand"));
        }
        result
    }
}
