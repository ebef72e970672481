//! The console behind the HTTP API: API Gateway events (payload 2.0) through the same router
//! `portier serve` mounts: the bearer token, the session cookie in payload 2.0's `cookies`, and
//! 404 when no admin token is configured.

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use aws_lambda_events::encodings::Body;
use shared::config::Secret;
use shared::console::{AdminAuth, Console};
use shared::lambda::answer;
use testkit::harness::{HookAuth, spawn_app};

const TOKEN: &str = "lambda-console-admin-token-0123";

fn event(method: &str, path: &str, query: &str, body: Option<&str>) -> ApiGatewayV2httpRequest {
    let mut e = ApiGatewayV2httpRequest::default();
    e.request_context.http.method = method.parse().unwrap_or_else(|e| panic!("{e}"));
    e.raw_path = Some(path.into());
    e.raw_query_string = Some(query.into());
    e.body = body.map(str::to_owned);
    e.headers.insert(
        "host",
        "abc.execute-api.eu-central-1.amazonaws.com".parse().unwrap_or_else(|e| panic!("{e}")),
    );
    e
}

fn text(r: &aws_lambda_events::apigw::ApiGatewayV2httpResponse) -> String {
    match &r.body {
        Some(Body::Text(t)) => t.clone(),
        _ => String::new(),
    }
}

#[tokio::test]
async fn the_console_answers_api_gateway_events_like_portier_serve() {
    let app = spawn_app(HookAuth::Signature).await;
    let auth = AdminAuth::new(Secret::from(TOKEN)).unwrap_or_else(|e| panic!("{e}"));
    let router = shared::console::router(Console::new(app.runtime.clone(), auth));

    let anonymous = answer(&router, event("GET", "/api/v1/status", "", None)).await;
    assert_eq!(anonymous.status_code, 401);

    let mut with_token = event("GET", "/api/v1/people", "email=anna%40example.com", None);
    with_token
        .headers
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap_or_else(|e| panic!("{e}")));
    let people = answer(&router, with_token.clone()).await;
    assert_eq!(people.status_code, 200, "{}", text(&people));
    assert_eq!(text(&people), "[]");

    let mut login = event("POST", "/console/login", "", Some(&format!("token={TOKEN}")));
    login.headers.insert(
        "content-type",
        "application/x-www-form-urlencoded".parse().unwrap_or_else(|e| panic!("{e}")),
    );
    let signed = answer(&router, login).await;
    assert_eq!(signed.status_code, 303);
    let cookie = signed.cookies.first().cloned().unwrap_or_default();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(cookie.contains("Secure"), "the HTTP API is HTTPS: {cookie}");
    assert!(!cookie.contains(TOKEN));

    let mut page = event("GET", "/console/", "", None);
    page.cookies = Some(vec![cookie.split(';').next().unwrap_or_default().to_owned()]);
    let status = answer(&router, page).await;
    assert_eq!(status.status_code, 200);
    assert!(text(&status).contains("Tenant space-berlin"), "{}", text(&status));

    let mut hooks = event("GET", "/api/v1/tenants/space-berlin/webhooks", "", None);
    hooks
        .headers
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap_or_else(|e| panic!("{e}")));
    let urls = text(&answer(&router, hooks).await);
    assert!(
        urls.contains("https://abc.execute-api.eu-central-1.amazonaws.com/hooks/nexudus/space-berlin/"),
        "{urls}"
    );

    let off = answer(&axum::Router::new(), with_token).await;
    assert_eq!(off.status_code, 404, "no admin token: 404");
}
