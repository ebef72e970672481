//! The console as `portier serve --demo` assembles it, in-process on a loopback port: the
//! demo's simulators and config, the webhook router with the console merged in, the workers.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use shared::clock::{Clock, SystemClock};
use shared::http_server::HttpLimits;
use shared::queue::Queue;
use shared::queue::embedded::EmbeddedQueue;
use shared::serve::App;
use shared::store::Records;
use shared::store::sqlite::SqliteStore;

/// A running console over the demo.
pub struct ServedDemo {
    pub url: String,
    pub token: String,
    pub demo: crate::demo::Demo,
}

/// Serves the demo as `portier serve --demo` does (two workers), its store and queue in
/// `data`; `listing_timeout` bounds each system's listing of the mapping choices (the
/// console's default when `None`).
pub async fn serve_demo(data: &Path, listing_timeout: Option<Duration>) -> ServedDemo {
    let demo = crate::demo::start().await;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = SqliteStore::open(&data.join("portier.db"), clock.clone()).unwrap_or_else(|e| panic!("{e}"));
    let records = Records::new(Arc::new(store), clock.clone());
    let queue: Arc<dyn Queue> =
        Arc::new(EmbeddedQueue::open(&data.join("queue.db"), clock, 10).unwrap_or_else(|e| panic!("{e}")));
    let mut app = App::builder(records, queue, &demo.config, &demo.secrets);
    if let Some(wait) = listing_timeout {
        app = app.listing_timeout(wait);
    }
    let app = app.build().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(app.has_console(), "the demo configures an admin token");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
    let url = format!("http://{}", listener.local_addr().unwrap_or_else(|e| panic!("{e}")));
    // Served until the test's runtime stops.
    tokio::spawn(app.serve(listener, HttpLimits::default(), 2, std::future::pending()));
    let token = demo.admin_token.clone();
    ServedDemo { url, token, demo }
}
