//! `nexudus-ingress`: API Gateway HTTP API → verify → SQS FIFO; also Brivo's presence events
//! (`/hooks/brivo/{tenant}` → the tenant's presence inbox). Both through the webhook routes
//! `portier serve` mounts.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::run_ingress().await
}
