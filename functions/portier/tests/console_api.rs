//! `portier serve`'s operator API and console sign-in, against the real binary: the admin
//! token guards every route, the session cookie never holds it, forms need their CSRF token.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

mod common;

use common::{LOCK, Setup};

const TOKEN: &str = "console-test-admin-token-0123456789";

/// Every API route, as (method, path, JSON body).
const ROUTES: &[(&str, &str, &str)] = &[
    ("GET", "/api/v1/status", ""),
    ("GET", "/api/v1/people?email=anna@example.com", ""),
    ("POST", "/api/v1/tenants/space-berlin/resync", r#"{"dry_run": true}"#),
    ("GET", "/api/v1/tenants/space-berlin/drift", ""),
    ("GET", "/api/v1/tenants/space-berlin/mappings", ""),
    ("GET", "/api/v1/tenants/space-berlin/mappings/options", ""),
    ("GET", "/api/v1/tenants/space-berlin/catalog", ""),
    (
        "PUT",
        "/api/v1/tenants/space-berlin/mappings",
        r#"{"item": {"kind": "pass", "id": "1001"}, "targets": []}"#,
    ),
    ("GET", "/api/v1/tenants/space-berlin/webhooks", ""),
    ("POST", "/api/v1/tenants/space-berlin/retry", ""),
    ("POST", "/api/v1/dead-letters/redrive", ""),
];

struct Served {
    _setup: Setup,
    child: Child,
    url: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    l.local_addr().unwrap_or_else(|e| panic!("{e}")).port()
}

/// `portier serve` on a free port, with `[admin]` in its config when `admin` is true.
async fn serve(admin: bool) -> Served {
    serve_without(admin, None).await
}

/// [`serve`], with the environment variable `missing` unset.
async fn serve_without(admin: bool, missing: Option<&str>) -> Served {
    let setup = common::anna_with_bike_storage("console").await;
    if admin {
        let path = setup.dir.join("portier.toml");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&path, format!("[admin]\nadmin_token_env = \"PORTIER_ADMIN_TOKEN\"\n{text}"))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let port = free_port();
    let nx = setup.nexudus.config().clone();
    let tk = setup.tapkey.config().clone();
    let mut command = Command::new(env!("CARGO_BIN_EXE_portier"));
    command
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--workers", "1"])
        .current_dir(&setup.dir)
        .env("NX_USER", nx.username)
        .env("NX_PASSWORD", nx.password)
        .env("NX_SECRET", "s3cret-s3cret-s3cret")
        .env("TK_ID", tk.client_id)
        .env("TK_SECRET", tk.client_secret)
        .env("PORTIER_ADMIN_TOKEN", TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(name) = missing {
        command.env_remove(name);
    }
    let child = command.spawn().unwrap_or_else(|e| panic!("starting portier serve: {e}"));
    let served = Served { _setup: setup, child, url: format!("http://127.0.0.1:{port}") };
    for _ in 0..200 {
        if let Ok(r) = client().get(format!("{}/healthz", served.url)).send().await
            && r.status() == 200
        {
            return served;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("portier serve did not answer on {}", served.url);
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

impl Served {
    async fn call(&self, method: &str, path: &str, body: &str, auth: Option<&str>) -> reqwest::Response {
        let url = format!("{}{path}", self.url);
        let mut req = match method {
            "POST" => client().post(url).header("content-type", "application/json").body(body.to_owned()),
            "PUT" => client().put(url).header("content-type", "application/json").body(body.to_owned()),
            _ => client().get(url),
        };
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        req.send().await.unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    async fn status_of(&self, method: &str, path: &str, body: &str) -> u16 {
        self.call(method, path, body, Some(&format!("Bearer {TOKEN}"))).await.status().as_u16()
    }

    async fn json(&self, method: &str, path: &str, body: &str) -> serde_json::Value {
        let r = self.call(method, path, body, Some(&format!("Bearer {TOKEN}"))).await;
        assert_eq!(r.status(), 200, "{method} {path}");
        r.json().await.unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_route_answers_401_without_the_token_or_with_a_wrong_one() {
    let s = serve(true).await;
    let wrong = format!("Bearer {TOKEN}x");
    for (method, path, body) in ROUTES {
        for auth in [None, Some(wrong.as_str()), Some(TOKEN), Some("Basic YWRtaW46YWRtaW4=")] {
            let r = s.call(method, path, body, auth).await;
            assert_eq!(r.status(), 401, "{method} {path} with {auth:?}");
            assert_eq!(r.headers().get("www-authenticate").and_then(|v| v.to_str().ok()), Some("Bearer"));
        }
        let r = s.call(method, path, body, Some(&format!("Bearer {TOKEN}"))).await;
        assert_eq!(r.status(), 200, "{method} {path} with the token");
    }
    // A forged cookie is no way in either.
    let r = client()
        .get(format!("{}/api/v1/status", s.url))
        .header("cookie", format!("portier_console={TOKEN}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_people_and_a_dry_run_then_a_real_resync_through_the_api() {
    let s = serve(true).await;
    let status = s.json("GET", "/api/v1/status", "").await;
    assert_eq!(status["tenants"][0]["tenant"], "space-berlin");
    assert_eq!(status["queue"]["dead"], 0);

    let nobody = s.json("GET", "/api/v1/people?email=anna@example.com", "").await;
    assert_eq!(nobody, serde_json::json!([]), "unknown before the first resync");

    let dry = s.json("POST", "/api/v1/tenants/space-berlin/resync", r#"{"dry_run": true}"#).await;
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["plans"][0]["ops"][0]["op"], "grant");
    assert_eq!(dry["plans"][0]["ops"][0]["target"]["tapkey_lock"], LOCK);
    assert_eq!(s._setup.tapkey.grants().len(), 0, "a dry run changes nothing");

    let bad =
        s.call("POST", "/api/v1/tenants/space-berlin/resync", "{}", Some(&format!("Bearer {TOKEN}"))).await;
    assert_eq!(bad.status(), 400, "dry_run is required");
    let unknown = s
        .call(
            "POST",
            "/api/v1/tenants/nowhere/resync",
            r#"{"dry_run": true}"#,
            Some(&format!("Bearer {TOKEN}")),
        )
        .await;
    assert_eq!(unknown.status(), 404);

    let real = s.json("POST", "/api/v1/tenants/space-berlin/resync", r#"{"dry_run": false}"#).await;
    assert_eq!(real["dry_run"], false);
    // The serve process's worker makes the grant; the explain JSON shows it.
    let mut person = serde_json::Value::Null;
    for _ in 0..200 {
        person = s.json("GET", "/api/v1/people?email=anna@example.com", "").await;
        if person[0]["applied"].as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(person[0]["profile"]["name"], "Anna Müller");
    assert_eq!(person[0]["entitlements"][0]["entitlement"]["label"], "Bike Storage");
    assert_eq!(person[0]["applied"][0]["target"]["tapkey_lock"], LOCK, "{person}");
    assert_eq!(s._setup.tapkey.grants().len(), 1);
    for q in ["456", "anna"] {
        let found = s.json("GET", &format!("/api/v1/people?q={q}"), "").await;
        assert_eq!(found[0]["subject"]["person"], "456", "by person id or name: {q}");
    }

    let mappings = s.json("GET", "/api/v1/tenants/space-berlin/mappings", "").await;
    assert_eq!(mappings["mappings"][0]["targets"][0]["name"], "Bike Storage Door");
    let hooks = s.json("GET", "/api/v1/tenants/space-berlin/webhooks", "").await;
    let first = hooks["urls"][0]["url"].as_str().unwrap_or_default();
    assert!(first.ends_with("/hooks/nexudus/space-berlin/AccessControlUpdate"), "{first}");
    let drift = s.json("GET", "/api/v1/tenants/space-berlin/drift", "").await;
    assert_eq!(drift["missing"], serde_json::json!([]), "in line after the resync");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_admin_token_the_console_and_api_answer_404() {
    let s = serve(false).await;
    for (method, path, body) in ROUTES {
        let r = s.call(method, path, body, Some(&format!("Bearer {TOKEN}"))).await;
        assert_eq!(r.status(), 404, "{method} {path}");
    }
    for path in ["/console/", "/console/login"] {
        assert_eq!(s.call("GET", path, "", None).await.status(), 404, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_signs_in_once_and_its_forms_need_the_csrf_token() {
    let s = serve(true).await;
    let page = s.call("GET", "/console/", "", None).await;
    assert_eq!(page.status(), 401, "the sign-in page");

    let login = |token: &str| {
        client()
            .post(format!("{}/console/login", s.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={token}"))
            .send()
    };
    let refused = login("wrong-wrong-wrong-wrong").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(refused.status(), 401);
    assert!(refused.headers().get("set-cookie").is_none());

    let ok = login(TOKEN).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ok.status(), 303);
    let set = ok.headers().get("set-cookie").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
    assert!(!set.contains(TOKEN), "the cookie never holds the token: {set}");
    let cookie = set.split(';').next().unwrap_or_default().to_owned();

    let get = |path: &str| client().get(format!("{}{path}", s.url)).header("cookie", cookie.clone()).send();
    let status = get("/console/").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status.status(), 200);
    let html = status.text().await.unwrap_or_default();
    assert!(html.contains("Tenant space-berlin"), "{html}");
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(csrf.len(), 64, "every form carries the session's CSRF token");

    let post = |path: &str, body: String| {
        client()
            .post(format!("{}{path}", s.url))
            .header("cookie", cookie.clone())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let forged =
        post("/console/tenants/space-berlin/sync", String::new()).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(forged.status(), 403, "no CSRF token, no change");
    let wrong = post("/console/tenants/space-berlin/sync", "csrf=0000".into())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(wrong.status(), 403);
    assert_eq!(s._setup.tapkey.grants().len(), 0, "nothing was applied");

    let plan = get("/console/tenants/space-berlin/sync").await.unwrap_or_else(|e| panic!("{e}"));
    let plan = plan.text().await.unwrap_or_default();
    assert!(plan.contains("would make 1 operation") && plan.contains(LOCK), "{plan}");
    let applied = post("/console/tenants/space-berlin/sync", format!("csrf={csrf}"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(applied.status(), 200);

    // The cookie also reads the API; a change through it needs the CSRF header.
    let api = get("/api/v1/status").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(api.status(), 200);
    let change = client()
        .post(format!("{}/api/v1/tenants/space-berlin/retry", s.url))
        .header("cookie", cookie.clone())
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(change.status(), 401);
    let with_csrf = client()
        .post(format!("{}/api/v1/tenants/space-berlin/retry", s.url))
        .header("cookie", cookie.clone())
        .header("x-csrf-token", csrf)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(with_csrf.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapping_saved_through_the_api_is_checked_like_the_file_and_against_the_systems() {
    let s = serve(true).await;
    const BACK: &str = "0b7e9a10-1111-4a8e-9b1e-5c2f3d4e6a02";
    s._setup.tapkey.add_lock(BACK, "Back Door", true);
    s._setup.tapkey.add_lock("0b7e9a10-2222-4a8e-9b1e-5c2f3d4e6a03", "Old Gate", false);
    let options = s.json("GET", "/api/v1/tenants/space-berlin/mappings/options", "").await;
    assert_eq!(options["items"][0]["item"], serde_json::json!({"kind": "pass", "id": "1001"}));
    assert_eq!(options["items"][0]["name"], "Bike Storage", "{options}");
    let titles: Vec<&str> = options["tapkey_locks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["title"].as_str())
        .collect();
    assert!(titles.contains(&"Back Door") && titles.contains(&"Old Gate"), "{titles:?}");

    let s = &s;
    let put = |body: String| async move {
        s.status_of("PUT", "/api/v1/tenants/space-berlin/mappings", &body).await
    };
    let mapping = |item: &str, target: &str| format!(r#"{{"item": {item}, "targets": [{target}]}}"#);
    let pass = r#"{"kind": "pass", "id": "1001"}"#;
    assert_eq!(put(mapping(pass, r#"{"tapkey_lock": "no-such-lock"}"#)).await, 400, "not bound");
    assert_eq!(
        put(mapping(pass, r#"{"tapkey_lock": "0b7e9a10-2222-4a8e-9b1e-5c2f3d4e6a03"}"#)).await,
        400,
        "inactive"
    );
    assert_eq!(
        put(mapping(r#"{"kind": "pass", "id": "9999"}"#, &format!(r#"{{"tapkey_lock": "{BACK}"}}"#))).await,
        400,
        "no such pass"
    );
    assert_eq!(
        put(mapping(pass, r#"{"salto_group": "ag-1"}"#)).await,
        400,
        "Salto KS is not configured (the file's check)"
    );
    assert_eq!(
        put(mapping(r#"{"kind": "unit", "id": "A-017"}"#, &format!(r#"{{"tapkey_lock": "{BACK}"}}"#))).await,
        400,
        "a Nexudus tenant has no units"
    );
    assert_eq!(put("{".into()).await, 400);
    assert_eq!(
        s.json("GET", "/api/v1/tenants/space-berlin/mappings", "").await["mappings"][0]["targets"][0]["name"],
        "Bike Storage Door",
        "nothing saved"
    );

    let saved = s
        .json(
            "PUT",
            "/api/v1/tenants/space-berlin/mappings",
            &mapping(pass, &format!(r#"{{"tapkey_lock": "{BACK}"}}"#)),
        )
        .await;
    assert_eq!(saved["mapping"]["targets"][0]["tapkey_lock"], BACK);
    let now = s.json("GET", "/api/v1/tenants/space-berlin/mappings", "").await;
    assert_eq!(now["mappings"][0]["targets"][0]["name"], "Back Door", "{now}");
    assert_eq!(now["mappings"][0]["origin"], "stored");
    let plan = s.json("POST", "/api/v1/tenants/space-berlin/resync", r#"{"dry_run": true}"#).await;
    assert_eq!(
        plan["plans"][0]["ops"][0]["target"]["tapkey_lock"], BACK,
        "the planner uses the saved mapping"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_left_out_for_a_missing_secret_is_shown_on_the_status_page() {
    let s = serve_without(true, Some("TK_SECRET")).await;
    let status = s.json("GET", "/api/v1/status", "").await;
    let reason = status["tenants"][0]["not_served"]["reason"].as_str().unwrap_or_default().to_owned();
    assert!(reason.contains("TK_SECRET"), "{status}");
    let login = client()
        .post(format!("{}/console/login", s.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={TOKEN}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let set = login.headers().get("set-cookie").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let cookie = set.split(';').next().unwrap_or_default().to_owned();
    let page = client()
        .get(format!("{}/console/", s.url))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .text()
        .await
        .unwrap_or_default();
    assert!(page.contains("Not served since") && page.contains("TK_SECRET"), "{page}");
    assert!(!page.contains("id=\"sync-space-berlin\""), "no Sync now for a tenant not served");
}
