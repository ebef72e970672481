//! The [`Queue`] on an SQS FIFO queue whose redrive policy moves poison messages to a FIFO
//! dead-letter queue.

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName, QueueAttributeName};

use super::{Delivery, Outgoing, Queue, QueueStats};
use crate::aws::sdk_error;
use crate::error::InfraError;

/// SQS limits.
const MAX_BATCH: usize = 10;
const MAX_WAIT_SECONDS: u64 = 20;
const MAX_VISIBILITY_SECONDS: u64 = 43_200;
/// How long a dead letter being moved stays hidden in the dead-letter queue.
const REDRIVE_VISIBILITY_SECONDS: i32 = 60;

/// SQS FIFO backend of the work queue.
#[derive(Clone)]
pub struct SqsQueue {
    client: Client,
    queue_url: String,
    dlq_url: Option<String>,
}

/// Whole seconds, rounded up (a timeout is never shorter than asked), within SQS's range.
fn seconds_up(d: Duration, max: u64) -> i32 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i32::try_from(secs.min(max)).unwrap_or(i32::MAX)
}

fn delivery(m: &Message) -> Delivery {
    let attr = |name: MessageSystemAttributeName| m.attributes().and_then(|a| a.get(&name)).cloned();
    Delivery {
        handle: m.receipt_handle().unwrap_or_default().to_owned(),
        message_id: m.message_id().unwrap_or_default().to_owned(),
        group: attr(MessageSystemAttributeName::MessageGroupId).unwrap_or_default(),
        body: m.body().unwrap_or_default().to_owned(),
        receive_count: attr(MessageSystemAttributeName::ApproximateReceiveCount)
            .and_then(|c| c.parse().ok())
            .unwrap_or(1),
    }
}

impl SqsQueue {
    pub fn new(client: Client, queue_url: String, dlq_url: Option<String>) -> Self {
        Self { client, queue_url, dlq_url }
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    pub fn dlq_url(&self) -> Option<&str> {
        self.dlq_url.as_deref()
    }

    /// Creates (or finds) `<prefix>-dlq.fifo` and `<prefix>.fifo` with a redrive policy of
    /// `max_receives`. For tests and local runs; deployments create them from the template.
    pub async fn create_fifo(
        client: Client,
        name_prefix: &str,
        max_receives: u32,
    ) -> Result<SqsQueue, InfraError> {
        let dlq_url = Self::create_one(&client, &format!("{name_prefix}-dlq.fifo"), None).await?;
        let dlq_arn = client
            .get_queue_attributes()
            .queue_url(&dlq_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| sdk_error("sqs", "GetQueueAttributes", e))?
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn))
            .cloned()
            .ok_or_else(|| {
                InfraError::Backend("sqs GetQueueAttributes: dead-letter queue has no ARN".to_owned())
            })?;
        let redrive = serde_json::json!({ "deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives });
        let queue_url =
            Self::create_one(&client, &format!("{name_prefix}.fifo"), Some(redrive.to_string())).await?;
        Ok(SqsQueue::new(client, queue_url, Some(dlq_url)))
    }

    async fn create_one(client: &Client, name: &str, redrive: Option<String>) -> Result<String, InfraError> {
        let mut req = client
            .create_queue()
            .queue_name(name)
            .attributes(QueueAttributeName::FifoQueue, "true")
            .attributes(QueueAttributeName::ContentBasedDeduplication, "false");
        if let Some(policy) = redrive {
            req = req.attributes(QueueAttributeName::RedrivePolicy, policy);
        }
        let out = req.send().await.map_err(|e| sdk_error("sqs", "CreateQueue", e))?;
        out.queue_url()
            .map(str::to_owned)
            .ok_or_else(|| InfraError::Backend("sqs CreateQueue: no queue URL".to_owned()))
    }

    async fn depths(&self, url: &str) -> Result<(u64, u64), InfraError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(|e| sdk_error("sqs", "GetQueueAttributes", e))?;
        let count = |name: QueueAttributeName| {
            out.attributes().and_then(|a| a.get(&name)).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        };
        Ok((
            count(QueueAttributeName::ApproximateNumberOfMessages),
            count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        ))
    }

    async fn receive_from(
        &self,
        url: &str,
        max: usize,
        visibility: i32,
        wait: i32,
    ) -> Result<Vec<Delivery>, InfraError> {
        let max = i32::try_from(max.clamp(1, MAX_BATCH)).unwrap_or(1);
        let out = self
            .client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(max)
            .visibility_timeout(visibility)
            .wait_time_seconds(wait)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .send()
            .await
            .map_err(|e| sdk_error("sqs", "ReceiveMessage", e))?;
        Ok(out.messages().iter().map(delivery).collect())
    }
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send(&self, msg: &Outgoing) -> Result<(), InfraError> {
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_group_id(&msg.group)
            .message_deduplication_id(&msg.dedup_id)
            .message_body(&msg.body)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sdk_error("sqs", "SendMessage", e))
    }

    async fn receive(
        &self,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Delivery>, InfraError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        // Long polling takes whole seconds: round to the nearest one, at most SQS's 20.
        let wait_secs = u64::try_from((wait.as_millis() + 500) / 1000).unwrap_or(MAX_WAIT_SECONDS);
        let wait = i32::try_from(wait_secs.min(MAX_WAIT_SECONDS)).unwrap_or(0);
        self.receive_from(&self.queue_url, max, seconds_up(visibility, MAX_VISIBILITY_SECONDS), wait).await
    }

    async fn delete(&self, handle: &str) -> Result<(), InfraError> {
        match self.client.delete_message().queue_url(&self.queue_url).receipt_handle(handle).send().await {
            Ok(_) => Ok(()),
            // A stale handle (the message was received again since): someone else owns it now.
            Err(e) if e.as_service_error().is_some_and(|e| e.is_receipt_handle_is_invalid()) => {
                tracing::debug!("sqs DeleteMessage with a stale receipt handle ignored");
                Ok(())
            }
            Err(e) => Err(sdk_error("sqs", "DeleteMessage", e)),
        }
    }

    async fn retry_later(&self, handle: &str, delay: Duration) -> Result<(), InfraError> {
        let result = self
            .client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(handle)
            .visibility_timeout(seconds_up(delay, MAX_VISIBILITY_SECONDS))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Already visible again or received by someone else: it will come back anyway.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_receipt_handle_is_invalid() || e.is_message_not_inflight()) =>
            {
                tracing::debug!("sqs ChangeMessageVisibility with a stale receipt handle ignored");
                Ok(())
            }
            Err(e) => Err(sdk_error("sqs", "ChangeMessageVisibility", e)),
        }
    }

    async fn stats(&self) -> Result<QueueStats, InfraError> {
        let (visible, in_flight) = self.depths(&self.queue_url).await?;
        let dead = match &self.dlq_url {
            Some(url) => {
                let (v, f) = self.depths(url).await?;
                v + f
            }
            None => 0,
        };
        Ok(QueueStats { visible, in_flight, dead })
    }

    async fn dead_letters(&self, max: usize) -> Result<Vec<Delivery>, InfraError> {
        let Some(url) = &self.dlq_url else {
            return Ok(Vec::new());
        };
        // Visibility 0 leaves every message where it is; receive until nothing new shows up.
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        while out.len() < max {
            let batch = self.receive_from(url, max - out.len(), 0, 0).await?;
            let before = out.len();
            for d in batch {
                if seen.insert(d.message_id.clone()) {
                    out.push(d);
                }
            }
            if out.len() == before {
                break;
            }
        }
        out.truncate(max);
        Ok(out)
    }

    async fn redrive_dead_letters(&self, max: usize) -> Result<usize, InfraError> {
        let Some(dlq) = &self.dlq_url else {
            return Err(InfraError::Backend("no dead-letter queue is configured (--dlq-url)".to_owned()));
        };
        let mut moved = 0;
        while moved < max {
            let batch = self.receive_from(dlq, max - moved, REDRIVE_VISIBILITY_SECONDS, 0).await?;
            if batch.is_empty() {
                break;
            }
            for d in batch {
                // Sent before it is deleted: a crash in between leaves a harmless copy, never
                // a lost message. A fresh deduplication id, or SQS would drop it as the
                // original if that was sent less than 5 minutes ago.
                let copy = Outgoing {
                    group: d.group.clone(),
                    dedup_id: format!("redrive.{}.{}", d.message_id, uuid::Uuid::new_v4().simple()),
                    body: d.body.clone(),
                    urgent: false,
                };
                self.send(&copy).await?;
                self.client
                    .delete_message()
                    .queue_url(dlq)
                    .receipt_handle(&d.handle)
                    .send()
                    .await
                    .map_err(|e| sdk_error("sqs", "DeleteMessage (dead-letter queue)", e))?;
                moved += 1;
            }
        }
        Ok(moved)
    }
}
