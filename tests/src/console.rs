//! The console as `portier serve --demo` assembles it, in-process on a loopback port: the
//! demo's simulators and config, the webhook router with the console merged in, the workers.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use shared::clock::{Clock, SystemClock};
use shared::queue::Queue;
use shared::queue::embedded::EmbeddedQueue;
use shared::serve::{self, Runtime};
use shared::store::Records;
use shared::store::sqlite::SqliteStore;
use shared::tenants::{StaticTenants, Tenants};
use shared::worker::Worker;

/// A running console over the demo.
pub struct ServedDemo {
    pub url: String,
    pub token: String,
    pub demo: crate::demo::Demo,
}

/// Serves the demo with its console, its store and queue in `data`; `listing_timeout` bounds
/// each system's listing of the mapping choices (the console's default when `None`).
pub async fn serve_demo(data: &Path, listing_timeout: Option<Duration>) -> ServedDemo {
    let demo = crate::demo::start().await;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = SqliteStore::open(&data.join("portier.db"), clock.clone()).unwrap_or_else(|e| panic!("{e}"));
    let records = Records::new(Arc::new(store), clock.clone());
    let queue: Arc<dyn Queue> =
        Arc::new(EmbeddedQueue::open(&data.join("queue.db"), clock, 10).unwrap_or_else(|e| panic!("{e}")));
    let tenants: Arc<dyn Tenants> = Arc::new(
        StaticTenants::build(&demo.config, &demo.secrets, shared::http::RetryPolicy::default())
            .unwrap_or_else(|e| panic!("{e}")),
    );
    for t in &demo.config.tenants {
        let doc = serde_json::to_value(t).unwrap_or_else(|e| panic!("{e}"));
        records.put_tenant_config(&t.id, doc).await.unwrap_or_else(|e| panic!("{e}"));
    }
    let auth = shared::console::admin_auth(&demo.config, &demo.secrets)
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("the demo configures an admin token"));
    let rt = Runtime {
        ingress: shared::ingress::Ingress::new(tenants.clone(), queue.clone(), records.clone()),
        worker: Worker::new(records.clone(), tenants),
        queue,
        records,
    };
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(serve::run_background(rt.clone(), 2, stop_rx));
    // The background stops with the test's runtime; keep the sender alive until then.
    std::mem::forget(_stop);
    let mut console = shared::console::Console::new(rt.clone(), auth);
    if let Some(wait) = listing_timeout {
        console = console.with_listing_timeout(wait);
    }
    let router = serve::router(rt).merge(shared::console::router(console));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
    let url = format!("http://{}", listener.local_addr().unwrap_or_else(|e| panic!("{e}")));
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let token = demo.admin_token.clone();
    ServedDemo { url, token, demo }
}
