//! Only the source gives or takes access (issue 12): attacks on what a webhook may decide,
//! each kept as a test.

use testkit::harness::{ANNA, BIKE_STORAGE, HOOK_SECRET, HookAuth, spawn_app};
use testkit::sim::SimWebhook;

fn holders(app: &testkit::harness::TestApp) -> Vec<String> {
    let contacts = app.tapkey.contacts();
    let mut h: Vec<String> = app
        .tapkey
        .active_grants()
        .iter()
        .filter_map(|g| contacts.iter().find(|c| c.id == g.contact_id).map(|c| c.identifier.clone()))
        .collect();
    h.sort();
    h
}

async fn post(app: &testkit::harness::TestApp, action: &str, hook: &SimWebhook) -> u16 {
    app.nexudus.deliver(&app.hook_url(action), hook).await
}

#[tokio::test]
async fn a_character_swapped_under_an_ascii_copy_signature_decides_nothing() {
    let app = spawn_app(HookAuth::Signature).await;
    let genuine_email = "anna@ex\u{e4}mple.com";
    app.nexudus.update_coworker_email(ANNA, genuine_email);
    app.nexudus.give_pass(ANNA, BIKE_STORAGE, None);
    // Nexudus signs the ASCII copy (ä → ?), so å in its place keeps the signature valid.
    let genuine = app.nexudus.webhook("AccessControlUpdate", &app.nexudus.coworker_dto(ANNA));
    let forged_body = String::from_utf8(genuine.body.clone()).expect("utf-8").replace('\u{e4}', "\u{e5}");
    let forged = SimWebhook { body: forged_body.into_bytes(), ..genuine.clone() };
    assert!(shared::ingress::verify::nexudus_signature(
        HOOK_SECRET.as_bytes(),
        &forged.body,
        &forged
            .headers
            .iter()
            .find(|(k, _)| k.contains("Signature"))
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    ));
    assert_eq!(post(&app, "AccessControlUpdate", &forged).await, 202);
    app.drain().await;
    assert_eq!(holders(&app), [genuine_email], "the email comes from the REST API, not the forged body");
    assert_eq!(post(&app, "AccessControlUpdate", &genuine).await, 202);
    app.drain().await;
    assert_eq!(holders(&app), [genuine_email]);
}

#[tokio::test]
async fn a_captured_body_posted_to_coworker_delete_revokes_nothing_while_the_customer_exists() {
    let app = spawn_app(HookAuth::Signature).await;
    app.nexudus.give_pass(ANNA, BIKE_STORAGE, None);
    let captured = app.nexudus.webhook("AccessControlUpdate", &app.nexudus.coworker_dto(ANNA));
    assert_eq!(post(&app, "AccessControlUpdate", &captured).await, 202);
    app.drain().await;
    assert_eq!(app.tapkey.active_grants().len(), 1);

    // The action in the URL is not signed: the same signed body, to the delete URL.
    assert_eq!(post(&app, "CoworkerDelete", &captured).await, 202);
    app.drain().await;
    assert_eq!(app.tapkey.active_grants().len(), 1, "Nexudus still has her: nothing is revoked");
    let report = app.resync(false).await.expect("resync");
    assert_eq!(report.op_count(), 0);
    assert_eq!(app.tapkey.active_grants().len(), 1);

    // Deleted for real: confirmed by the API, then revoked.
    app.nexudus.delete_coworker(ANNA);
    assert_eq!(post(&app, "CoworkerDelete", &captured).await, 202);
    app.drain().await;
    assert!(app.tapkey.active_grants().is_empty());
}

#[tokio::test]
async fn a_bare_id_with_the_token_to_coworker_delete_revokes_nothing_while_the_customer_exists() {
    let app = spawn_app(HookAuth::Token).await;
    app.nexudus.give_pass(ANNA, BIKE_STORAGE, None);
    assert_eq!(app.hook("AccessControlUpdate", &app.nexudus.coworker_dto(ANNA)).await, 202);
    app.drain().await;
    assert_eq!(app.hook("CoworkerDelete", &serde_json::json!({ "Id": ANNA })).await, 202);
    app.drain().await;
    assert_eq!(app.tapkey.active_grants().len(), 1);
}
