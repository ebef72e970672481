//! `portier serve --demo`: every `portier …` line it prints works as printed, from another
//! folder, with nothing copied by hand (issue 15, item 6); the Kinnovis event docs/kinnovis.md
//! documents is what the binary accepts (item 10).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// Ends the demo this test started, however the test ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_the_demo_prints_works_as_printed_and_the_documented_kinnovis_event_is_taken() {
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let home = std::env::temp_dir().join(format!("portier-demo-{unique}"));
    let elsewhere = std::env::temp_dir().join(format!("portier-demo-elsewhere-{unique}"));
    for d in [&home, &elsewhere] {
        std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("{e}"));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("{e}"));
    let mut demo = Child(
        Command::new(env!("CARGO_BIN_EXE_portier"))
            .args(["serve", "--demo", "--data", "demo-data", "--listen", &format!("127.0.0.1:{port}")])
            .current_dir(&home)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{e}")),
    );
    // The help ends with the last self-storage line; read up to it.
    let stdout = demo.0.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let mut printed = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap_or_default();
        let done = line.contains("paid: restored");
        printed.push(line);
        if done {
            break;
        }
    }
    let commands: Vec<Vec<String>> = printed
        .iter()
        .filter_map(|l| l.trim().strip_prefix("portier "))
        .map(|l| l.split('#').next().unwrap_or_default().split_whitespace().map(str::to_owned).collect())
        .collect();
    assert!(commands.len() >= 10, "{printed:#?}");

    let http = reqwest::Client::new();
    let mut up = false;
    for _ in 0..200 {
        if http.get(format!("http://127.0.0.1:{port}/healthz")).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(up, "the demo did not start");

    for args in &commands {
        let out = Command::new(env!("CARGO_BIN_EXE_portier"))
            .args(args)
            .current_dir(&elsewhere)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        // drift and status report findings with 1; anything else is a broken line.
        let findings = matches!(args[0].as_str(), "drift" | "status" | "explain");
        let ok = out.status.code() == Some(0) || (findings && out.status.code() == Some(1));
        assert!(ok, "`portier {}` failed ({:?}):\n{text}", args.join(" "), out.status.code());
        for broken in ["is not set", "reading ", "No such file", "panicked"] {
            assert!(!text.contains(broken), "`portier {}`:\n{text}", args.join(" "));
        }
        if args[0] == "send" {
            assert!(text.starts_with("202"), "`portier {}`: {text}", args.join(" "));
        }
    }
    // The Kinnovis contract as docs/kinnovis.md gives it is what the binary takes: its sample
    // body, signed as the page says, is queued for the demo's self-storage tenant.
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/kinnovis.md"))
        .unwrap_or_else(|e| panic!("{e}"));
    let sample = doc
        .split("```json\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .unwrap_or_else(|| panic!("docs/kinnovis.md has no JSON sample"));
    let id = format!("msg_{unique}");
    let now = chrono::Utc::now().timestamp();
    let signature = testkit::sim::kinnovis::standard_signature(
        testkit::demo::DEMO_KINNOVIS_SECRET,
        &id,
        now,
        sample.as_bytes(),
    );
    let answer = http
        .post(format!("http://127.0.0.1:{port}/hooks/kinnovis/{}", testkit::demo::DEMO_STORAGE_TENANT))
        .header("webhook-id", id)
        .header("webhook-timestamp", now.to_string())
        .header("webhook-signature", signature)
        .body(sample.to_owned())
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(answer.status().as_u16(), 202, "{}", answer.text().await.unwrap_or_default());
    drop(demo);
    std::fs::remove_dir_all(&home).ok();
    std::fs::remove_dir_all(&elsewhere).ok();
}
