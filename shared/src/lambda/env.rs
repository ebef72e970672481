//! The clients a Lambda container builds once at cold start, and their warm-up.

use crate::ingress::Ingress;
use crate::worker::Worker;

/// The connections a function warms during init (see [`LambdaEnv::warm`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Warm {
    /// DynamoDB (one read).
    Store,
    /// SQS (`GetQueueAttributes` of the work queue).
    Queue,
    /// Every tenant's config and secrets, and the tenants' clients built (DynamoDB and
    /// Secrets Manager).
    Tenants,
}

/// The clients a Lambda container builds once at cold start, from its environment:
/// `TABLE_NAME`, `QUEUE_URL`, optional `DLQ_URL`, `SECRETS_PREFIX` (each tenant's secrets are
/// the Secrets Manager secret `<prefix><tenant>`; unset: environment variables, for local
/// runs), and `AWS_ENDPOINT_URL` for a loopback server.
#[derive(Clone)]
pub struct LambdaEnv {
    pub records: crate::store::Records,
    pub queue: std::sync::Arc<dyn crate::queue::Queue>,
    pub tenants: std::sync::Arc<dyn crate::tenants::Tenants>,
    /// When the container began building this, for the `init_ms` figure [`LambdaEnv::warm`] logs.
    started: std::time::Instant,
}

/// How many containers may call one tenant's accounts at once, each with rate limiters of its
/// own: the worker's maximum concurrency (`WORKER_MAX_CONCURRENCY`, the template's
/// `WorkerMaxConcurrency`) plus the one resync. Each container keeps `1/shares` of every limit,
/// so together they stay within the account's. Unset: 1 (a single process).
pub fn rate_shares(worker_max_concurrency: Option<&str>) -> Result<u32, String> {
    match worker_max_concurrency.map(str::trim) {
        None | Some("") => Ok(1),
        Some(v) => match v.parse::<u32>() {
            Ok(n) if (1..=1000).contains(&n) => Ok(n + 1),
            _ => Err(format!("WORKER_MAX_CONCURRENCY must be a whole number from 1 to 1000, not {v:?}")),
        },
    }
}

/// How long a tenant's config is used before the table is read again.
pub const CONFIG_TTL: std::time::Duration = std::time::Duration::from_secs(60);

impl LambdaEnv {
    pub async fn from_env() -> Result<Self, String> {
        let started = std::time::Instant::now();
        let need =
            |name: &str| std::env::var(name).map_err(|_| format!("environment variable {name} is not set"));
        let table = need("TABLE_NAME")?;
        let queue_url = need("QUEUE_URL")?;
        let endpoint = std::env::var("AWS_ENDPOINT_URL").ok();
        let sdk = crate::aws::sdk_config(endpoint.as_deref()).await;
        let clock: std::sync::Arc<dyn crate::clock::Clock> = std::sync::Arc::new(crate::clock::SystemClock);
        let store =
            crate::store::dynamo::DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), table, clock.clone());
        let records = crate::store::Records::new(std::sync::Arc::new(store), clock);
        let queue = crate::queue::sqs::SqsQueue::new(
            aws_sdk_sqs::Client::new(&sdk),
            queue_url,
            std::env::var("DLQ_URL").ok(),
        );
        let secrets: std::sync::Arc<dyn crate::secrets::TenantSecrets> =
            match std::env::var("SECRETS_PREFIX").ok().filter(|p| !p.is_empty()) {
                Some(prefix) => std::sync::Arc::new(crate::secrets::SecretsManager::new(
                    aws_sdk_secretsmanager::Client::new(&sdk),
                    prefix,
                    crate::secrets::SECRETS_TTL,
                )),
                None => std::sync::Arc::new(crate::secrets::SharedSecrets(std::sync::Arc::new(
                    crate::config::EnvSecrets,
                ))),
            };
        let shares = rate_shares(std::env::var("WORKER_MAX_CONCURRENCY").ok().as_deref())?;
        let mut env = Self::assemble(records, std::sync::Arc::new(queue), secrets, shares);
        env.started = started;
        Ok(env)
    }

    /// Assembles the environment from parts, with one set of secrets for every tenant (tests
    /// use a loopback server and static secrets).
    pub fn new(
        records: crate::store::Records,
        queue: std::sync::Arc<dyn crate::queue::Queue>,
        secrets: std::sync::Arc<dyn crate::config::Secrets>,
    ) -> Self {
        Self::with_tenant_secrets(records, queue, std::sync::Arc::new(crate::secrets::SharedSecrets(secrets)))
    }

    /// Assembles the environment from parts, with secrets per tenant.
    pub fn with_tenant_secrets(
        records: crate::store::Records,
        queue: std::sync::Arc<dyn crate::queue::Queue>,
        secrets: std::sync::Arc<dyn crate::secrets::TenantSecrets>,
    ) -> Self {
        Self::assemble(records, queue, secrets, 1)
    }

    fn assemble(
        records: crate::store::Records,
        queue: std::sync::Arc<dyn crate::queue::Queue>,
        secrets: std::sync::Arc<dyn crate::secrets::TenantSecrets>,
        rate_shares: u32,
    ) -> Self {
        let tenants = crate::tenants::TableTenants::new(
            records.clone(),
            secrets,
            crate::http::RetryPolicy::default(),
            CONFIG_TTL,
        )
        .with_rate_shares(rate_shares);
        Self { records, queue, tenants: std::sync::Arc::new(tenants), started: std::time::Instant::now() }
    }

    /// Opens the connections a function uses during init, so the first request does not pay
    /// for them (a first TLS handshake can cost most of a second). Failures are logged, not
    /// fatal: each request reports its own. `budget` bounds the whole warm-up. Returns how many
    /// parts answered.
    pub async fn warm(&self, parts: &[Warm], budget: std::time::Duration) -> usize {
        let started = std::time::Instant::now();
        let work = async {
            let mut ok = 0;
            for part in parts {
                let result = match part {
                    Warm::Store => self.records.store().ping().await.map(|()| 1),
                    Warm::Queue => self.queue.stats().await.map(|_| 1),
                    Warm::Tenants => self.warm_tenants().await,
                };
                match result {
                    Ok(_) => ok += 1,
                    Err(e) => tracing::warn!(part = ?part, error = %e, "warm-up failed; requests will retry"),
                }
            }
            ok
        };
        let ok = match tokio::time::timeout(budget, work).await {
            Ok(ok) => ok,
            Err(_) => {
                tracing::warn!(budget_ms = budget.as_millis() as u64, "warm-up ran out of time");
                0
            }
        };
        tracing::info!(
            ok,
            of = parts.len(),
            warm_ms = started.elapsed().as_millis() as u64,
            // From reading the environment to ready: the init a cold start adds.
            init_ms = self.started.elapsed().as_millis() as u64,
            "warmed"
        );
        ok
    }

    /// Loads every tenant at once; a tenant that cannot be built is logged and tried again
    /// when a request needs it.
    async fn warm_tenants(&self) -> Result<usize, crate::error::InfraError> {
        let mut set = tokio::task::JoinSet::new();
        for id in self.tenants.ids().await? {
            let tenants = self.tenants.clone();
            set.spawn(async move { (tenants.get(&id).await, id) });
        }
        let mut built = 0;
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok((Ok(Some(_)), _)) => built += 1,
                Ok((Ok(None), _)) => {}
                Ok((Err(e), id)) => tracing::warn!(tenant = %id, error = %e, "tenant not ready"),
                Err(e) => tracing::warn!(error = %e, "tenant warm-up task failed"),
            }
        }
        Ok(built)
    }

    pub fn ingress(&self) -> Ingress {
        Ingress::new(self.tenants.clone(), self.queue.clone(), self.records.clone())
    }

    pub fn worker(&self) -> Worker {
        Worker::new(self.records.clone(), self.tenants.clone())
    }

    /// The parts the routers take, over this deployment's table, queue and tenants.
    pub fn runtime(&self) -> crate::serve::Runtime {
        crate::serve::Runtime::new(self.tenants.clone(), self.queue.clone(), self.records.clone())
    }

    /// The webhook routes `portier serve` mounts (design §6.1), for the ingress functions.
    pub fn hooks(&self) -> axum::Router {
        crate::serve::router(self.runtime())
    }
}

#[cfg(test)]
mod tests {
    use super::rate_shares;

    #[test]
    fn the_worker_concurrency_and_the_resync_share_the_rate_limits() {
        assert_eq!(rate_shares(None), Ok(1));
        assert_eq!(rate_shares(Some("")), Ok(1));
        assert_eq!(rate_shares(Some("2")), Ok(3));
        assert_eq!(rate_shares(Some(" 50 ")), Ok(51));
        for bad in ["0", "-1", "two", "1.5", "1001"] {
            let err = rate_shares(Some(bad)).expect_err(bad);
            assert!(err.contains("WORKER_MAX_CONCURRENCY") && err.contains(bad), "{err}");
        }
    }
}
