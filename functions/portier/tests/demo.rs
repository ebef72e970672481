//! `portier serve --demo`: every `portier …` line it prints works as printed, from another
//! folder, with nothing copied by hand (issue 15, item 6).

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
async fn every_command_the_demo_prints_works_as_printed() {
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
    drop(demo);
    std::fs::remove_dir_all(&home).ok();
    std::fs::remove_dir_all(&elsewhere).ok();
}
