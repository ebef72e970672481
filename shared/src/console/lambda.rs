//! The console behind the AWS HTTP API (payload format 2.0): each event goes through the same
//! router `portier serve` mounts, so both runtimes answer alike.

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::encodings::Body;
use axum::http::{HeaderValue, Method, Request, header};
use base64::Engine;
use tower::ServiceExt;

/// Larger answers are cut off: console pages and API answers are far smaller (and the
/// HTTP API's own limit is 6 MB).
const MAX_ANSWER: usize = 5 * 1024 * 1024;

fn text(status: u16, message: &str) -> ApiGatewayV2httpResponse {
    let mut r = ApiGatewayV2httpResponse::default();
    r.status_code = i64::from(status);
    r.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.body = Some(Body::Text(serde_json::json!({ "error": message }).to_string()));
    r
}

/// Answers one HTTP API event with `router` (the console's, or a 404 router when no admin
/// token is configured). Malformed events answer 400; nothing here panics.
pub async fn console_http(router: axum::Router, event: &ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
    let method =
        Method::from_bytes(event.request_context.http.method.as_str().as_bytes()).unwrap_or(Method::GET);
    let path = event.raw_path.as_deref().unwrap_or("/");
    let uri = match event.raw_query_string.as_deref().filter(|q| !q.is_empty()) {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    let body = match (&event.body, event.is_base64_encoded) {
        (None, _) => Vec::new(),
        (Some(b), false) => b.clone().into_bytes(),
        (Some(b), true) => match base64::engine::general_purpose::STANDARD.decode(b) {
            Ok(b) => b,
            Err(_) => return text(400, "body is not valid base64"),
        },
    };
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(headers) = builder.headers_mut() {
        headers.extend(event.headers.clone());
        // Payload 2.0 moves cookies out of the headers.
        if let Some(cookies) = event.cookies.as_ref().filter(|c| !c.is_empty())
            && let Ok(v) = HeaderValue::from_str(&cookies.join("; "))
        {
            headers.insert(header::COOKIE, v);
        }
        // The HTTP API terminates TLS: the `Secure` cookie flag and webhook URLs need to know.
        headers.entry("x-forwarded-proto").or_insert(HeaderValue::from_static("https"));
    }
    let request = match builder.body(axum::body::Body::from(body)) {
        Ok(r) => r,
        Err(_) => return text(400, "malformed request"),
    };
    let Ok(answer) = router.oneshot(request).await;
    let (parts, body) = answer.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_ANSWER).await {
        Ok(b) => b,
        Err(_) => return text(500, "answer too large"),
    };
    let mut r = ApiGatewayV2httpResponse::default();
    r.status_code = i64::from(parts.status.as_u16());
    for (name, value) in &parts.headers {
        if name == header::SET_COOKIE {
            r.cookies.extend(value.to_str().ok().map(str::to_owned));
        } else {
            r.headers.append(name, value.clone());
        }
    }
    r.body = match String::from_utf8(bytes.to_vec()) {
        Ok(s) => Some(Body::Text(s)),
        Err(_) => {
            r.is_base64_encoded = true;
            Some(Body::Text(base64::engine::general_purpose::STANDARD.encode(&bytes)))
        }
    };
    r
}

/// The secret that holds the admin token on AWS: `<SECRETS_PREFIX>.admin` (a `.` no tenant id
/// has, so it cannot be a tenant's secret).
pub const ADMIN_SECRET_SUFFIX: &str = ".admin";

/// The console function's admin token: the key `ADMIN_TOKEN_ENV` (default
/// `PORTIER_ADMIN_TOKEN`, as `[admin] admin_token_env` names it) of the secret
/// `<SECRETS_PREFIX>.admin`, or of the environment when `SECRETS_PREFIX` is unset (local runs).
/// `None` when `ADMIN_TOKEN_ENV` is set empty: the console is off and answers 404.
pub async fn admin_auth_from_env() -> Result<Option<super::AdminAuth>, String> {
    let name = std::env::var("ADMIN_TOKEN_ENV").unwrap_or_else(|_| "PORTIER_ADMIN_TOKEN".into());
    if name.trim().is_empty() {
        return Ok(None);
    }
    let secrets: std::sync::Arc<dyn crate::config::Secrets> =
        match std::env::var("SECRETS_PREFIX").ok().filter(|p| !p.is_empty()) {
            Some(prefix) => {
                use crate::secrets::TenantSecrets;
                let endpoint = std::env::var("AWS_ENDPOINT_URL").ok();
                let sdk = crate::aws::sdk_config(endpoint.as_deref()).await;
                let sm = crate::secrets::SecretsManager::new(
                    aws_sdk_secretsmanager::Client::new(&sdk),
                    prefix,
                    crate::secrets::SECRETS_TTL,
                );
                sm.for_tenant(&crate::model::TenantId(ADMIN_SECRET_SUFFIX.into()))
                    .await
                    .map_err(|e| e.to_string())?
            }
            None => std::sync::Arc::new(crate::config::EnvSecrets),
        };
    let token = secrets.get(&name).map_err(|e| e.0)?;
    super::AdminAuth::new(token).map(Some).map_err(|e| format!("{name}: {e}"))
}
