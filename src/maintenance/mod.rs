//! Maintenance mode: a maintenance page served instead of the app.
//!
//! `on` applies a small nginx Deployment (the page and its configuration in
//! a ConfigMap, see [`server`]), waits until it is available, and only then
//! switches the environment's Services to its pods. Each Service is switched
//! by one JSON merge patch that records its own selector in an annotation and
//! replaces it, guarded by the Service's `resourceVersion` (see
//! [`selector`]). `off` restores every recorded selector exactly, then
//! removes the server.
//!
//! Both work from what the cluster holds, not from berth's memory, and both
//! are idempotent: after a crash at any point, running either again
//! finishes the job. A deploy that re-applies a Service in maintenance keeps
//! it switched, recording the newly rendered selector ([`hold`], which the
//! deploy pipeline applies before each apply), so only `off` ends maintenance.

mod selector;
mod server;

use anyhow::{Context, anyhow};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde::Serialize;
use serde_json::Value;

pub use selector::{Notice, Selector, Standing, hold};

use crate::cluster::apply::Resolved;
use crate::cluster::{FIELD_MANAGER, INSTANCE_LABEL, access, delete_if_present, instance};
use crate::config::{self, Config, Environment};
use crate::error::{BerthError, input_error};
use crate::identity::Deployer;
use crate::output::Output;
use crate::rollout::Thresholds;
use crate::wait::{self, Tracked, WaitFailure};
use selector::{notice_of, selector_of, standing};
use server::{NAME, Page};

/// How often a Service patch is retried when the Service changed meanwhile.
const CONFLICT_RETRIES: usize = 5;

/// One environment's maintenance: where it happens and how it is served.
pub struct Scope {
    client: Client,
    env_name: String,
    namespace: String,
    instance: String,
    settings: config::Maintenance,
    thresholds: Thresholds,
}

/// Where an environment's maintenance stands.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// `on` (every Service switched), `partial` or `off`.
    pub state: &'static str,
    /// The record of the Service switched longest ago.
    #[serde(flatten)]
    pub notice: Notice,
    /// The environment's Services, and any other Service in its maintenance.
    pub services: Vec<ServiceStatus>,
    /// The maintenance Deployment, if it exists.
    pub server: Option<ServerStatus>,
}

/// Where one Service stands.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceStatus {
    /// The Service's name.
    pub name: String,
    /// Whether it selects the maintenance pods.
    pub maintenance: bool,
    /// Its selector now.
    pub selector: Selector,
    /// The selector `off` restores, when it is switched.
    pub original_selector: Option<Selector>,
    /// Why `off` cannot restore it by itself, if it cannot.
    pub problem: Option<String>,
}

/// The maintenance Deployment's readiness.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ServerStatus {
    /// Ready pods.
    pub ready: i32,
    /// Desired pods.
    pub desired: i32,
}

impl Status {
    /// One line for `berth status`: the state, since when, by whom.
    pub fn summary(&self) -> String {
        let switched: Vec<String> = self
            .services
            .iter()
            .filter(|s| s.maintenance)
            .map(|s| format!("Service/{}", s.name))
            .collect();
        if switched.is_empty() {
            return "off".into();
        }
        let mut line = if self.state == "on" {
            "on".to_string()
        } else {
            "partly on".to_string()
        };
        if let Some(since) = &self.notice.since {
            line.push_str(&format!(" since {since}"));
        }
        if let Some(by) = &self.notice.by {
            line.push_str(&format!(" by {by}"));
        }
        line.push_str(&format!(" ({})", switched.join(", ")));
        if self.server.is_none_or(|s| s.ready == 0) {
            line.push_str(
                "; the maintenance server is not running, so those Services answer nothing",
            );
        }
        line
    }
}

/// The Services maintenance switches, chosen among a namespace's Services.
#[derive(Debug, Default)]
struct Choice {
    /// The Services to switch.
    targets: Vec<Service>,
    /// Named in berth.yaml, but not in the namespace.
    missing: Vec<String>,
    /// Named in berth.yaml, but impossible to switch, with the reason.
    unswitchable: Vec<(String, String)>,
}

/// Why `service` cannot be switched, if it cannot.
fn unswitchable(service: &Service) -> Option<&'static str> {
    let kind = service.spec.as_ref().and_then(|s| s.type_.as_deref());
    if kind == Some("ExternalName") {
        Some("it is an ExternalName Service, which selects no pods")
    } else if selector_of(service).is_empty() {
        Some("it has no selector (its endpoints are managed elsewhere)")
    } else {
        None
    }
}

/// The Services to switch among `services` (a namespace's): those `named`,
/// or, without names, every Service labelled with `instance` that has a selector.
fn choose(services: Vec<Service>, instance: &str, named: Option<&[String]>) -> Choice {
    let mut choice = Choice::default();
    let Some(names) = named else {
        choice.targets = services
            .into_iter()
            .filter(|s| s.labels().get(INSTANCE_LABEL).map(String::as_str) == Some(instance))
            .filter(|s| unswitchable(s).is_none())
            .collect();
        return choice;
    };
    for name in names {
        match services.iter().find(|s| s.name_any() == *name) {
            None => choice.missing.push(name.clone()),
            Some(s) => match unswitchable(s) {
                Some(why) => choice.unswitchable.push((name.clone(), why.to_owned())),
                None => choice.targets.push(s.clone()),
            },
        }
    }
    choice
}

/// When a record says maintenance began; a record without a readable time sorts last.
fn began(notice: &Notice) -> (bool, Option<Timestamp>) {
    let since = notice.since.as_deref().and_then(|s| s.parse().ok());
    (since.is_none(), since)
}

/// `key=value,...`, for messages.
fn describe(selector: &Selector) -> String {
    let pairs: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.join(",")
}

impl Scope {
    /// The maintenance of environment `env_name` of `app`, reached through `client`.
    pub fn new(client: Client, app: &str, env_name: &str, env: &Environment) -> Scope {
        Scope {
            client,
            env_name: env_name.to_owned(),
            namespace: env.namespace.clone(),
            instance: instance(app, env_name),
            settings: env.maintenance.clone(),
            thresholds: Thresholds::from(&env.rollout),
        }
    }

    fn services(&self) -> Api<Service> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Every Service in the namespace.
    async fn all_services(&self) -> anyhow::Result<Vec<Service>> {
        let list = self
            .services()
            .list(&ListParams::default())
            .await
            .with_context(|| format!("listing the Services in namespace {}", self.namespace))?;
        Ok(list.items)
    }

    /// Ask the API server, changing nothing, whether the deployer may do
    /// everything `on` and `off` do; an input error lists what is denied.
    pub async fn check_access(&self) -> anyhow::Result<()> {
        access::check(&self.client, &access::maintenance_needs(&self.namespace)).await
    }

    /// The Services `on` switches. A Service named under
    /// `maintenance.services` that does not exist is an input error, unless
    /// it is in `expected` (a deploy about to create it): then it is left out,
    /// with a warning. A switched Service whose own selector is not recorded
    /// refuses the lot. Changes nothing.
    pub async fn targets(&self, expected: &[String], out: &Output) -> anyhow::Result<Vec<Service>> {
        let key = format!("environments.{}.maintenance.services", self.env_name);
        let choice = choose(
            self.all_services().await?,
            &self.instance,
            self.settings.services.as_deref(),
        );
        let (created, missing): (Vec<String>, Vec<String>) = choice
            .missing
            .into_iter()
            .partition(|m| expected.contains(m));
        if !missing.is_empty() {
            return Err(input_error(format!(
                "{key} names {} that namespace {} does not have; fix the names in berth.yaml \
                 (`kubectl -n {} get services` lists those there), or deploy the app first",
                missing
                    .iter()
                    .map(|m| format!("Service {m}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                self.namespace,
                self.namespace
            )));
        }
        if let Some((name, why)) = choice.unswitchable.first() {
            return Err(input_error(format!(
                "{key} names Service {name}, but {why}; berth cannot switch it to the \
                 maintenance page: remove it from the list"
            )));
        }
        for name in created {
            out.warn(&format!(
                "Service {name} does not exist yet: this deploy creates it, serving the app, not the maintenance page"
            ));
        }
        for service in &choice.targets {
            if let Standing::Unrecorded { problem } = standing(service, &self.instance) {
                return Err(self.unrecorded(&service.name_any(), &problem));
            }
        }
        Ok(choice.targets)
    }

    /// The error for a Service that selects the maintenance pods with no
    /// usable record of its own selector.
    fn unrecorded(&self, name: &str, problem: &str) -> anyhow::Error {
        BerthError::Refused(format!(
            "Service {name} selects the maintenance pods, but {problem}, so berth cannot tell \
             which pods it served; set its selector by hand (`kubectl -n {} edit service {name}`) \
             or deploy the app (a deploy records the selector it renders), then run this again",
            self.namespace
        ))
        .into()
    }

    /// Turn maintenance on: apply the maintenance server, wait until it is
    /// available, then switch every target Service to it. The page shows
    /// `title` and `message`, else what the page shows now, else berth.yaml's.
    /// Idempotent: a Service already switched keeps its recorded selector.
    /// Returns the Services switched now.
    pub async fn on(
        &self,
        title: Option<&str>,
        message: Option<&str>,
        expected: &[String],
        out: &Output,
    ) -> anyhow::Result<Vec<String>> {
        let targets = self.targets(expected, out).await?;
        if targets.is_empty() {
            return Err(input_error(format!(
                "namespace {} has no Service labelled {INSTANCE_LABEL}={} with a selector to \
                 switch; deploy the app first, or name the Services under \
                 `environments.{}.maintenance.services` in berth.yaml",
                self.namespace, self.instance, self.env_name
            )));
        }
        let showing = targets
            .iter()
            .filter(|s| standing(s, &self.instance).is_switched())
            .map(notice_of)
            .next()
            .unwrap_or_default();
        let page = Page {
            title: title
                .map(str::to_owned)
                .or(showing.title)
                .unwrap_or_else(|| self.settings.title.clone()),
            message: message
                .map(str::to_owned)
                .or(showing.message)
                .unwrap_or_else(|| self.settings.message.clone()),
        };
        self.start_server(&targets, &page, out).await?;
        let notice = Notice {
            since: Some(Timestamp::now().to_string()),
            by: Some(Deployer::current().describe()),
            title: Some(page.title),
            message: Some(page.message),
        };
        let mut switched = Vec::new();
        for target in &targets {
            let name = target.name_any();
            let changed = self
                .patch_service(&name, |live| {
                    selector::switch_patch(live, &self.instance, &notice).map_err(|problem| {
                        match standing(live, &self.instance) {
                            Standing::Unrecorded { problem } => self.unrecorded(&name, &problem),
                            _ => {
                                input_error(format!("Service {name} cannot be switched: {problem}"))
                            }
                        }
                    })
                })
                .await?;
            let own = describe(&selector_of(target));
            if changed && !standing(target, &self.instance).is_switched() {
                out.info(&format!(
                    "Service/{name} now serves the maintenance page (its selector {own} is recorded)"
                ));
                switched.push(name);
            } else {
                out.info(&format!(
                    "Service/{name} already serves the maintenance page"
                ));
            }
        }
        Ok(switched)
    }

    /// Apply the ConfigMap and the Deployment serving `page` on every port
    /// `targets` use, and wait until the Deployment is available.
    async fn start_server(
        &self,
        targets: &[Service],
        page: &Page,
        out: &Output,
    ) -> anyhow::Result<()> {
        let ports = server::server_ports(targets, self.settings.port).map_err(|e| {
            input_error(format!(
                "the maintenance server cannot serve the Services' ports: {e}; change \
                 `environments.{}.maintenance.port` in berth.yaml",
                self.env_name
            ))
        })?;
        let numbers: Vec<u16> = ports.iter().map(|p| p.number).collect();
        let map = server::config_map(
            &self.instance,
            page,
            &server::nginx_conf(&numbers, self.settings.retry_after),
        );
        let deployment = server::deployment(
            &self.instance,
            &self.settings.image,
            &ports,
            &server::content_digest(&map),
        )
        .context("building the maintenance Deployment")?;
        let params = PatchParams::apply(FIELD_MANAGER).force();
        Api::<ConfigMap>::namespaced(self.client.clone(), &self.namespace)
            .patch(NAME, &params, &Patch::Apply(&map))
            .await
            .context("applying the maintenance page's ConfigMap")?;
        let applied = Api::<Deployment>::namespaced(self.client.clone(), &self.namespace)
            .patch(NAME, &params, &Patch::Apply(&deployment))
            .await
            .context("applying the maintenance Deployment")?;
        let listed: Vec<String> = numbers.iter().map(u16::to_string).collect();
        out.info(&format!(
            "maintenance server Deployment/{NAME} ({}) on port {}; waiting until it is available",
            self.settings.image,
            listed.join(", ")
        ));
        self.wait_available(applied.metadata.generation.unwrap_or(0), out)
            .await
    }

    /// Wait until the maintenance Deployment of `generation` is available,
    /// failing fast on pods that can never start.
    async fn wait_available(&self, generation: i64, out: &Output) -> anyhow::Result<()> {
        let tracked = [Tracked {
            kind: "Deployment".into(),
            name: NAME.into(),
            generation,
        }];
        let selector = format!("{}={}", selector::POD_LABEL, self.instance);
        let timeout = self.settings.timeout;
        let waited = wait::wait_all(
            &self.client,
            wait::Scope {
                namespace: &self.namespace,
                workloads: &selector,
                pods: &selector,
            },
            &tracked,
            self.thresholds,
            timeout,
            out,
        )
        .await;
        out.finish_workloads();
        match waited {
            Ok(()) => Ok(()),
            Err(WaitFailure::Doomed { workload, failure }) => {
                let summary =
                    wait::explain(&self.client, &self.namespace, &workload, &failure).await;
                out.failure(&format!("the maintenance server cannot start\n{summary}"));
                Err(BerthError::DeployFailed(format!(
                    "the maintenance server cannot start: {} ({}); no Service was changed; check \
                     `environments.{}.maintenance.image` in berth.yaml",
                    failure.reason, failure.message, self.env_name
                ))
                .into())
            }
            Err(WaitFailure::Unwatchable(refusal)) => {
                Err(BerthError::DeployFailed(format!("{refusal}; no Service was changed")).into())
            }
            Err(WaitFailure::Unreachable(gave_up)) => Err(anyhow::Error::new(gave_up)
                .context("waiting for the maintenance server; no Service was changed")),
            Err(WaitFailure::TimedOut { pending }) => Err(BerthError::TimedOut(format!(
                "the maintenance server was not available within {} ({}); no Service was \
                 changed; `environments.{}.maintenance.timeout` sets how long to wait",
                crate::duration::display(timeout),
                pending.join("; "),
                self.env_name
            ))
            .into()),
        }
    }

    /// Patch Service `name` with what `patch_for` computes from its live
    /// state, again if it changed in between. `Ok(false)`: nothing to change.
    async fn patch_service(
        &self,
        name: &str,
        patch_for: impl Fn(&Service) -> anyhow::Result<Option<Value>>,
    ) -> anyhow::Result<bool> {
        let api = self.services();
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..Default::default()
        };
        for _ in 0..CONFLICT_RETRIES {
            let live = api
                .get_opt(name)
                .await
                .with_context(|| format!("reading Service {name}"))?
                .ok_or_else(|| anyhow!("Service {name} was deleted while berth switched it"))?;
            let Some(patch) = patch_for(&live)? else {
                return Ok(false);
            };
            match api.patch(name, &params, &Patch::Merge(&patch)).await {
                Ok(_) => return Ok(true),
                // It changed since we read it: read it again.
                Err(kube::Error::Api(s)) if s.is_conflict() => continue,
                Err(e) => return Err(e).with_context(|| format!("patching Service {name}")),
            }
        }
        Err(anyhow!(
            "Service {name} kept changing while berth patched it; run the command again"
        ))
    }

    /// Turn maintenance off: restore the recorded selector of every Service
    /// in maintenance, exactly, and remove the record (also from Services
    /// whose selector was set since); then delete the maintenance server.
    /// Works from the annotations alone, whatever state a crash left. The
    /// server stays while any Service still selects it. Returns the
    /// Services restored.
    pub async fn off(&self, out: &Output) -> anyhow::Result<Vec<String>> {
        let mut restored = Vec::new();
        let mut refused = Vec::new();
        for service in self.all_services().await? {
            let name = service.name_any();
            let before = standing(&service, &self.instance);
            if before == Standing::Serving {
                continue;
            }
            let changed = self
                .patch_service(&name, |live| {
                    selector::restore_patch(live, &self.instance)
                        .map_err(|problem| self.unrecorded(&name, &problem))
                })
                .await;
            match (changed, before) {
                (Ok(true), Standing::InMaintenance { original }) => {
                    out.info(&format!(
                        "Service/{name} serves the app again (selector {})",
                        describe(&original)
                    ));
                    restored.push(name);
                }
                (Ok(true), _) => out.info(&format!(
                    "Service/{name}: removed a maintenance record left behind (its selector was set since)"
                )),
                (Ok(false), _) => {}
                (Err(e), _) if matches!(crate::error::kind_of(&e), Some(BerthError::Refused(_))) => {
                    refused.push(format!("{e:#}"));
                }
                (Err(e), _) => return Err(e),
            }
        }
        if !refused.is_empty() {
            return Err(BerthError::Refused(format!(
                "{}\nthe maintenance server keeps running for those Services",
                refused.join("\n")
            ))
            .into());
        }
        self.remove_server(out).await?;
        Ok(restored)
    }

    /// Delete the maintenance Deployment and its ConfigMap, if they exist.
    async fn remove_server(&self, out: &Output) -> anyhow::Result<()> {
        let params = DeleteParams::background();
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), &self.namespace);
        let maps: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
        let deployment = delete_if_present(&deployments, NAME, &params)
            .await
            .context("deleting the maintenance Deployment")?;
        let map = delete_if_present(&maps, NAME, &params)
            .await
            .context("deleting the maintenance page's ConfigMap")?;
        if deployment || map {
            out.info(&format!("removed the maintenance server Deployment/{NAME}"));
        }
        Ok(())
    }

    /// Where maintenance stands: each Service of the environment (and any
    /// other in its maintenance), the record, the server. Changes nothing.
    pub async fn status(&self) -> anyhow::Result<Status> {
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), &self.namespace);
        let (services, deployment) = tokio::try_join!(self.all_services(), async {
            deployments
                .get_opt(NAME)
                .await
                .context("reading the maintenance Deployment")
        })?;
        let targets: Vec<String> = choose(
            services.clone(),
            &self.instance,
            self.settings.services.as_deref(),
        )
        .targets
        .iter()
        .map(ResourceExt::name_any)
        .collect();
        let mut shown = Vec::new();
        let mut notice: Option<Notice> = None;
        for service in &services {
            let name = service.name_any();
            let standing = standing(service, &self.instance);
            if standing == Standing::Serving && !targets.contains(&name) {
                continue;
            }
            if standing.is_switched() {
                let record = notice_of(service);
                if notice.as_ref().is_none_or(|n| began(&record) < began(n)) {
                    notice = Some(record);
                }
            }
            let (original_selector, problem) = match &standing {
                Standing::InMaintenance { original } => (Some(original.clone()), None),
                Standing::Unrecorded { problem } => (None, Some(problem.clone())),
                Standing::Serving | Standing::Stale => (None, None),
            };
            shown.push(ServiceStatus {
                name,
                maintenance: standing.is_switched(),
                selector: selector_of(service),
                original_selector,
                problem,
            });
        }
        let switched = shown.iter().filter(|s| s.maintenance).count();
        let state = match switched {
            0 => "off",
            n if n == shown.len() => "on",
            _ => "partial",
        };
        let server = deployment.map(|d| {
            let status = d.status.unwrap_or_default();
            ServerStatus {
                ready: status.available_replicas.unwrap_or(0),
                desired: d.spec.and_then(|s| s.replicas).unwrap_or(1),
            }
        });
        Ok(Status {
            state,
            notice: notice.unwrap_or_default(),
            services: shown,
            server,
        })
    }
}

/// Maintenance around a deploy (`advanced-deploy --maintenance`): on before
/// the migration, off once the rollout ends, however it ends. If the
/// environment was already in maintenance when the deploy began, it stays on.
pub struct Window {
    scope: Scope,
    /// The Services the deploy renders: a named one missing now is created by it.
    expected: Vec<String>,
    /// Every target Service was in maintenance before the deploy.
    was_on: bool,
}

impl Window {
    /// Check, changing nothing, that the deploy can go into maintenance:
    /// the configured Services exist (or the deploy renders them) and the
    /// deployer may switch them. `None`: the environment has no Service yet
    /// (a first deploy), so there is nothing to switch.
    pub async fn prepare(
        client: &Client,
        config: &Config,
        env_name: &str,
        rendered: &[Resolved],
        out: &Output,
    ) -> anyhow::Result<Option<Window>> {
        let env = config.environment(env_name)?;
        let scope = Scope::new(client.clone(), &config.app, env_name, env);
        scope.check_access().await?;
        let expected: Vec<String> = rendered
            .iter()
            .filter(|o| o.resource.kind == "Service" && o.resource.group.is_empty())
            .map(|o| o.object.name_any())
            .collect();
        let targets = scope.targets(&expected, out).await?;
        if targets.is_empty() {
            out.warn(&format!(
                "--maintenance: {env_name} has no Service to switch yet; this deploy runs without the maintenance page"
            ));
            return Ok(None);
        }
        let was_on = targets
            .iter()
            .all(|s| standing(s, &scope.instance).is_switched());
        Ok(Some(Window {
            scope,
            expected,
            was_on,
        }))
    }

    /// Take down at the end a page that was up before the deploy: one a
    /// schema rollback that stopped midway left up, which the rollback
    /// continuing or reversing it ends.
    pub fn adopt(self) -> Window {
        Window {
            was_on: false,
            ..self
        }
    }

    /// Turn maintenance on (the pipeline's step before the migration).
    pub async fn open(&self, out: &Output) -> anyhow::Result<()> {
        out.step("maintenance on");
        self.scope
            .on(None, None, &self.expected, out)
            .await
            .map(drop)
    }

    /// Turn maintenance off after the rollout, unless it was on before the
    /// deploy. A failure says how to finish by hand.
    pub async fn close(self, out: &Output) -> anyhow::Result<()> {
        let env = &self.scope.env_name;
        if self.was_on {
            out.info(&format!(
                "maintenance was on before this deploy, so it stays on; `{berth} maintenance {env} off` ends it",
                berth = crate::program::name()
            ));
            return Ok(());
        }
        out.step("maintenance off");
        let closed = self.scope.off(out).await;
        if let Err(e) = &closed {
            out.failure(&format!(
                "maintenance could not be turned off: {e:#}\nthe maintenance page may still be up; \
                 run `{berth} maintenance {env} off`",
                berth = crate::program::name()
            ));
        }
        closed.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::selector::maintenance_selector;
    use super::*;
    use serde_json::json;

    fn service(name: &str, instance: Option<&str>, selector: Value, kind: &str) -> Service {
        let labels = instance.map_or(json!({}), |i| json!({ INSTANCE_LABEL: i }));
        serde_json::from_value(json!({
            "metadata": { "name": name, "labels": labels },
            "spec": { "selector": selector, "type": kind },
        }))
        .unwrap()
    }

    fn namespace() -> Vec<Service> {
        vec![
            service(
                "frontend",
                Some("wb-test"),
                json!({"app": "frontend"}),
                "ClusterIP",
            ),
            service("api", Some("wb-test"), json!({"app": "api"}), "NodePort"),
            service("headless-manual", Some("wb-test"), json!({}), "ClusterIP"),
            service(
                "external",
                Some("wb-test"),
                json!({"app": "x"}),
                "ExternalName",
            ),
            service(
                "other-env",
                Some("wb-prod"),
                json!({"app": "frontend"}),
                "ClusterIP",
            ),
            service("by-hand", None, json!({"app": "legacy"}), "ClusterIP"),
        ]
    }

    fn names(services: &[Service]) -> Vec<String> {
        services.iter().map(ResourceExt::name_any).collect()
    }

    #[test]
    fn by_default_every_service_of_the_environment_with_a_selector_is_switched() {
        let choice = choose(namespace(), "wb-test", None);
        assert_eq!(names(&choice.targets), ["frontend", "api"]);
        assert!(choice.missing.is_empty() && choice.unswitchable.is_empty());
    }

    #[test]
    fn named_services_are_switched_whoever_made_them_and_problems_are_named() {
        let named = [
            "by-hand",
            "frontend",
            "nosuch",
            "external",
            "headless-manual",
        ]
        .map(String::from);
        let choice = choose(namespace(), "wb-test", Some(&named));
        assert_eq!(names(&choice.targets), ["by-hand", "frontend"]);
        assert_eq!(choice.missing, ["nosuch"]);
        let unswitchable: Vec<&str> = choice
            .unswitchable
            .iter()
            .map(|(name, _)| name.as_str())
            .collect();
        assert_eq!(unswitchable, ["external", "headless-manual"]);
    }

    #[test]
    fn the_summary_says_since_when_by_whom_and_warns_of_a_missing_server() {
        let mut status = Status {
            state: "on",
            notice: Notice {
                since: Some("2026-11-22T10:00:00Z".into()),
                by: Some("ada@box".into()),
                ..Default::default()
            },
            services: vec![ServiceStatus {
                name: "frontend".into(),
                maintenance: true,
                selector: maintenance_selector("wb-test"),
                original_selector: None,
                problem: None,
            }],
            server: Some(ServerStatus {
                ready: 1,
                desired: 1,
            }),
        };
        assert_eq!(
            status.summary(),
            "on since 2026-11-22T10:00:00Z by ada@box (Service/frontend)"
        );
        status.server = None;
        assert!(
            status.summary().contains("not running"),
            "{}",
            status.summary()
        );
        status.services[0].maintenance = false;
        assert_eq!(status.summary(), "off");
    }
}
