//! The operator console in a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`, driven over WebDriver): sign in, "Sync now" shows the dry-run plan, apply
//! it, find the person and see their access, on a desktop and on a phone-sized screen, and map
//! items with the drop-downs the lock systems fill (Tapkey locks, Salto KS and Brivo groups).
//!
//! Portier runs in-process exactly as `portier serve --demo` assembles it (the demo's
//! simulators and config, the webhook router with the console merged in, the background
//! workers). Without chromedriver the test skips with a message, except under `CI=true`, where
//! it fails: `scripts/test.sh` installs the browser there.
//!
//! `PORTIER_SCREENSHOTS=docs/console` (what `make screenshots` sets) keeps the screenshots for
//! the docs; otherwise they go to a temporary folder.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};

/// The first program of `names` found on `PATH` (or named by `env`).
fn program(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env).map(PathBuf::from).filter(|p| p.is_file()) {
        return Some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).flat_map(|dir| names.iter().map(move |n| dir.join(n))).find(|p| p.is_file())
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Portier as `serve --demo` runs it, on a free loopback port: (URL, admin token, demo).
async fn portier_demo(data: &Path) -> (String, String, testkit::demo::Demo) {
    let served = testkit::console::serve_demo(data, None).await;
    (served.url, served.token, served.demo)
}

/// chromedriver on a free port, and a headless Chromium session through it.
async fn browser(driver: &Path) -> (Killed, Client) {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        l.local_addr().unwrap_or_else(|e| panic!("{e}")).port()
    };
    let child = Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", driver.display()));
    let child = Killed(child);
    let mut options = serde_json::json!({
        // Root in a container: Chromium's sandbox needs user namespaces it may not have.
        "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1200,900"],
    });
    if let Some(chromium) = program("CHROME_BIN", &["chromium", "chromium-browser", "google-chrome"]) {
        options["binary"] = serde_json::json!(chromium);
    }
    let mut caps = serde_json::Map::new();
    caps.insert("goog:chromeOptions".into(), options);
    let mut last = String::new();
    for _ in 0..100 {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => return (child, c),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no WebDriver session from {}: {last}", driver.display());
}

/// The element `css` selects, once the page has it.
async fn element(c: &Client, css: &str) -> fantoccini::elements::Element {
    c.wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("waiting for {css}: {e}"))
}

async fn text_of(c: &Client, css: &str) -> String {
    // A page that is still being replaced (a form just posted) leaves the element found
    // stale: find it again on the new page.
    for _ in 0..50 {
        match element(c, css).await.text().await {
            Ok(text) => return text,
            Err(e) if e.to_string().contains("stale element") => tokio::task::yield_now().await,
            Err(e) => panic!("text of {css}: {e}"),
        }
    }
    panic!("text of {css}: the element kept going stale")
}

async fn click(c: &Client, css: &str) {
    element(c, css).await.click().await.unwrap_or_else(|e| panic!("clicking {css}: {e}"));
}

async fn fill(c: &Client, css: &str, text: &str) {
    let el = c.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("finding {css}: {e}"));
    el.send_keys(text).await.unwrap_or_else(|e| panic!("typing into {css}: {e}"));
}

async fn screenshot(c: &Client, dir: &Path, name: &str) {
    let png = c.screenshot().await.unwrap_or_else(|e| panic!("screenshot {name}: {e}"));
    assert!(png.starts_with(b"\x89PNG"), "{name} is a PNG");
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap_or_else(|e| panic!("writing {name}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_signs_in_syncs_and_finds_a_persons_access() {
    let Some(driver) = program("CHROMEDRIVER", &["chromedriver"]) else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!(
                "CI=true but chromedriver is missing: scripts/test.sh installs chromium and chromium-driver"
            );
        }
        // Straight to stderr, past the test harness's capture, so the skip is seen.
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"SKIPPED console_browser: no chromedriver on PATH (apt-get install chromium chromium-driver, or set CHROMEDRIVER)\n",
        );
        return;
    };
    let data = std::env::temp_dir().join(format!("portier-console-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&data).unwrap_or_else(|e| panic!("{e}"));
    let shots = match std::env::var_os("PORTIER_SCREENSHOTS") {
        // Relative to the repository root, as `make screenshots` gives it.
        Some(d) => Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(d),
        None => data.join("screenshots"),
    };
    std::fs::create_dir_all(&shots).unwrap_or_else(|e| panic!("{e}"));
    let (url, token, _demo) = portier_demo(&data).await;
    let (_driver, c) = browser(&driver).await;

    // Signing in: the token once, then the status page.
    c.goto(&format!("{url}/console/")).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(text_of(&c, "main").await.contains("Sign in"));
    fill(&c, "#token", "not-the-admin-token").await;
    click(&c, "#sign-in").await;
    assert!(text_of(&c, "main").await.contains("That is not the admin token."));
    fill(&c, "#token", &token).await;
    click(&c, "#sign-in").await;
    let status = text_of(&c, "#tenant-demo").await;
    assert!(status.contains("Tenant demo") && status.contains("no resync yet"), "{status}");
    screenshot(&c, &shots, "status").await;

    // "Sync now": the dry run's plan first, nothing changed yet.
    click(&c, "#sync-demo").await;
    let plan = text_of(&c, "#plan").await;
    assert!(plan.contains("Dry run") && plan.contains("Anna Müller") && plan.contains("+ grant"), "{plan}");
    assert!(plan.contains("Nothing has been changed yet"), "{plan}");
    assert!(_demo.tapkey.grants().is_empty(), "a dry run changes nothing");
    screenshot(&c, &shots, "sync-dry-run").await;

    // Apply it; the workers make the grants.
    click(&c, "#apply").await;
    let applied = text_of(&c, "#applied").await;
    assert!(applied.contains("Started"), "{applied}");
    for _ in 0..100 {
        if !_demo.tapkey.grants().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(_demo.tapkey.grants().len(), 1, "the Bike Storage Door grant");

    // Find the person and see their access (what `portier explain` shows).
    c.goto(&format!("{url}/console/")).await.unwrap_or_else(|e| panic!("{e}"));
    fill(&c, "#who", testkit::demo::DEMO_EMAIL).await;
    click(&c, "#find").await;
    let report = text_of(&c, ".person-report").await;
    assert!(report.contains("Anna Müller") && report.contains("Bike Storage"), "{report}");
    let access = text_of(&c, ".person-report table.applied").await;
    assert!(access.contains(testkit::demo::DEMO_LOCK) && access.contains("grant"), "{access}");
    screenshot(&c, &shots, "person").await;

    // The same page on a phone.
    c.set_window_size(390, 844).await.unwrap_or_else(|e| panic!("{e}"));
    c.refresh().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(text_of(&c, ".person-report").await.contains("Anna Müller"));
    screenshot(&c, &shots, "person-phone").await;
    c.set_window_size(1200, 900).await.unwrap_or_else(|e| panic!("{e}"));

    // A second dry run: now in line with the source at Tapkey.
    c.goto(&format!("{url}/console/tenants/demo/sync?provider=tapkey"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let again = text_of(&c, "#plan").await;
    assert!(again.contains("would make 0 operation"), "{again}");

    c.goto(&format!("{url}/console/tenants/demo/webhooks")).await.unwrap_or_else(|e| panic!("{e}"));
    let hooks = c.find(Locator::Css("#hook-0")).await.unwrap_or_else(|e| panic!("{e}"));
    let first = hooks.prop("value").await.unwrap_or_else(|e| panic!("{e}")).unwrap_or_default();
    assert_eq!(first, format!("{url}/hooks/nexudus/demo/AccessControlUpdate"));
    screenshot(&c, &shots, "webhooks").await;

    // Mappings: edit one with the drop-downs (the source's units, Tapkey's locks by name).
    c.goto(&format!("{url}/console/tenants/demo-storage/mappings")).await.unwrap_or_else(|e| panic!("{e}"));
    click(&c, "#mappings a.edit").await;
    let lock = c.find(Locator::Css("#tapkey_lock")).await.unwrap_or_else(|e| panic!("{e}"));
    lock.select_by_label("Bike Storage Door").await.unwrap_or_else(|e| panic!("{e}"));
    click(&c, "#save-mapping").await;
    let notice = text_of(&c, "#notice").await;
    assert!(notice.contains("Saved unit#A-017"), "{notice}");
    let table = text_of(&c, "#mappings").await;
    assert!(table.contains("Bike Storage Door") && table.contains("console or CSV import"), "{table}");

    // A Nexudus resource to a Salto KS and a Brivo group, picked by name from the lists the
    // lock systems answered (no id typed).
    c.goto(&format!("{url}/console/tenants/demo/mappings")).await.unwrap_or_else(|e| panic!("{e}"));
    let item = c.find(Locator::Css("#item")).await.unwrap_or_else(|e| panic!("{e}"));
    let space = format!("Event space (resource {})", testkit::demo::DEMO_EVENT_SPACE);
    item.select_by_label(&space).await.unwrap_or_else(|e| panic!("{e}"));
    let salto = c.find(Locator::Css("#salto_group")).await.unwrap_or_else(|e| panic!("{e}"));
    salto.select_by_label("Coworking floor").await.unwrap_or_else(|e| panic!("{e}"));
    let brivo = c.find(Locator::Css("#brivo_group")).await.unwrap_or_else(|e| panic!("{e}"));
    brivo.select_by_label("Office 2").await.unwrap_or_else(|e| panic!("{e}"));
    click(&c, "#save-mapping").await;
    let notice = text_of(&c, "#notice").await;
    let saved = format!("Saved resource#{}: 2 target(s)", testkit::demo::DEMO_EVENT_SPACE);
    assert!(notice.contains(&saved), "{notice}");
    let mut row = String::new();
    for tr in c.find_all(Locator::Css("#mappings tr")).await.unwrap_or_else(|e| panic!("{e}")) {
        let text = tr.text().await.unwrap_or_else(|e| panic!("{e}"));
        if text.contains("Event space") {
            row = text;
        }
    }
    assert!(row.contains("Salto KS: Coworking floor") && row.contains("Brivo: Office 2"), "{row}");
    assert!(row.contains(testkit::groups::SALTO_GROUP), "ids beside the names: {row}");
    screenshot(&c, &shots, "mappings").await;

    c.close().await.unwrap_or_else(|e| panic!("{e}"));
    let _ = std::fs::remove_dir_all(&data);
}
