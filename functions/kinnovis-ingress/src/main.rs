//! `kinnovis-ingress`: API Gateway HTTP API → Standard Webhooks verify → SQS FIFO, through the
//! webhook routes `portier serve` mounts.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::run_ingress().await
}
