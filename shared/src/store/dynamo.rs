//! The [`Store`] on one DynamoDB table (design §6.4).
//!
//! Attributes: `pk` and `sk` (S, the key), `v` (N, the optimistic version), `data` (S, the
//! record's JSON text) and `ttl` (N, unix seconds, the table's TTL attribute). DynamoDB
//! deletes expired items lazily (up to days later) and moto never does, so every read and
//! every condition compares `ttl` with the injected clock: an expired item is absent.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    TableStatus, TimeToLiveSpecification,
};

use super::{Cond, Item, Store};
use crate::aws::sdk_error;
use crate::clock::Clock;
use crate::error::InfraError;

type Attrs = HashMap<String, AttributeValue>;

/// How long `create_table_if_missing` waits for a new table to become active.
const TABLE_ACTIVE_TIMEOUT: Duration = Duration::from_secs(120);

/// A live item: no TTL, or a TTL still in the future.
const LIVE: &str = "(attribute_not_exists(#ttl) OR #ttl > :now)";
/// No live item: none at all, or an expired one.
const ABSENT: &str = "(attribute_not_exists(pk) OR #ttl <= :now)";

/// DynamoDB backend of the record store.
#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    clock: Arc<dyn Clock>,
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn key(pk: &str, sk: &str) -> Attrs {
    HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

/// A condition expression with its attribute names and values.
struct Condition {
    expression: String,
    names: HashMap<String, String>,
    values: Attrs,
}

/// Sends a put or delete under an optional [`Condition`]; a failed condition is
/// [`InfraError::Conflict`]. A macro because the SDK's two request builders share no trait.
macro_rules! send_conditional {
    ($req:expr, $condition:expr, $op:literal) => {{
        let mut req = $req;
        if let Some(c) = $condition {
            req = req
                .condition_expression(c.expression)
                .set_expression_attribute_names(Some(c.names))
                .set_expression_attribute_values(Some(c.values));
        }
        match req.send().await {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {
                Err(InfraError::Conflict)
            }
            Err(e) => Err(sdk_error("dynamodb", $op, e)),
        }
    }};
}

/// The DynamoDB condition for `cond` at `now` (unix seconds); `None` for `Always`.
fn condition(cond: Cond, now: i64) -> Option<Condition> {
    let names = |extra: &[(&str, &str)]| {
        // `ttl` is a reserved word, so it is always named through a placeholder.
        std::iter::once(("#ttl", "ttl"))
            .chain(extra.iter().copied())
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    };
    match cond {
        Cond::Always => None,
        Cond::Absent => Some(Condition {
            expression: ABSENT.to_owned(),
            names: names(&[]),
            values: HashMap::from([(":now".to_owned(), n(now))]),
        }),
        Cond::Version(v) => Some(Condition {
            expression: format!("#v = :v AND {LIVE}"),
            names: names(&[("#v", "v")]),
            values: HashMap::from([(":v".to_owned(), n(v)), (":now".to_owned(), n(now))]),
        }),
    }
}

/// Reads one stored item; errors name the attribute, never its value.
fn decode(attrs: &Attrs) -> Result<Item, InfraError> {
    fn string<'a>(attrs: &'a Attrs, name: &str) -> Result<&'a str, InfraError> {
        match attrs.get(name) {
            Some(AttributeValue::S(v)) => Ok(v),
            _ => Err(InfraError::Backend(format!("dynamodb item without string attribute {name:?}"))),
        }
    }
    fn number<T: std::str::FromStr>(attrs: &Attrs, name: &str) -> Result<Option<T>, InfraError> {
        match attrs.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::N(v)) => v.parse().map(Some).map_err(|_| {
                InfraError::Backend(format!("dynamodb item attribute {name:?} is not an integer"))
            }),
            Some(_) => Err(InfraError::Backend(format!("dynamodb item attribute {name:?} is not a number"))),
        }
    }
    let data = serde_json::from_str(string(attrs, "data")?)
        .map_err(|e| InfraError::Backend(format!("dynamodb item data is not JSON: {e}")))?;
    Ok(Item {
        pk: string(attrs, "pk")?.to_owned(),
        sk: string(attrs, "sk")?.to_owned(),
        version: number(attrs, "v")?.unwrap_or(0),
        data,
        expires_at: number(attrs, "ttl")?,
    })
}

fn encode(item: &Item) -> Result<Attrs, InfraError> {
    let data =
        serde_json::to_string(&item.data).map_err(|e| InfraError::Backend(format!("record data: {e}")))?;
    let mut attrs = key(&item.pk, &item.sk);
    attrs.insert("v".to_owned(), n(item.version));
    attrs.insert("data".to_owned(), AttributeValue::S(data));
    if let Some(ttl) = item.expires_at {
        attrs.insert("ttl".to_owned(), n(ttl));
    }
    Ok(attrs)
}

fn is_live(item: &Item, now: i64) -> bool {
    item.expires_at.is_none_or(|t| t > now)
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>, clock: Arc<dyn Clock>) -> Self {
        Self { client, table: table.into(), clock }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn now(&self) -> i64 {
        self.clock.now().timestamp()
    }

    /// Creates the table (pk/sk strings, on demand, TTL on `ttl`) unless it exists, and waits
    /// until it is active. For tests and local runs; deployments create it from the template.
    pub async fn create_table_if_missing(&self) -> Result<(), InfraError> {
        let exists = match self.client.describe_table().table_name(&self.table).send().await {
            Ok(_) => true,
            Err(e) if e.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => false,
            Err(e) => return Err(sdk_error("dynamodb", "DescribeTable", e)),
        };
        if !exists {
            let attr = |name: &str| {
                AttributeDefinition::builder()
                    .attribute_name(name)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(InfraError::backend)
            };
            let key = |name: &str, kind: KeyType| {
                KeySchemaElement::builder()
                    .attribute_name(name)
                    .key_type(kind)
                    .build()
                    .map_err(InfraError::backend)
            };
            let created = self
                .client
                .create_table()
                .table_name(&self.table)
                .attribute_definitions(attr("pk")?)
                .attribute_definitions(attr("sk")?)
                .key_schema(key("pk", KeyType::Hash)?)
                .key_schema(key("sk", KeyType::Range)?)
                .billing_mode(BillingMode::PayPerRequest)
                .send()
                .await;
            match created {
                Ok(_) => {}
                // Someone else created it meanwhile: fine, wait for it below.
                Err(e) if e.as_service_error().is_some_and(|e| e.is_resource_in_use_exception()) => {}
                Err(e) => return Err(sdk_error("dynamodb", "CreateTable", e)),
            }
        }
        self.wait_active().await?;
        if !exists {
            let ttl = TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name("ttl")
                .build()
                .map_err(InfraError::backend)?;
            self.client
                .update_time_to_live()
                .table_name(&self.table)
                .time_to_live_specification(ttl)
                .send()
                .await
                .map_err(|e| sdk_error("dynamodb", "UpdateTimeToLive", e))?;
        }
        Ok(())
    }

    async fn wait_active(&self) -> Result<(), InfraError> {
        let started = tokio::time::Instant::now();
        loop {
            let out = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(|e| sdk_error("dynamodb", "DescribeTable", e))?;
            if out.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
                return Ok(());
            }
            if started.elapsed() > TABLE_ACTIVE_TIMEOUT {
                return Err(InfraError::Backend(format!(
                    "dynamodb table {} did not become active",
                    self.table
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// All live items of one partition matching `key_condition` (beyond `pk = :pk`), paging
    /// through DynamoDB's 1 MB result pages.
    async fn query_where(
        &self,
        pk: &str,
        key_condition: Option<&str>,
        values: Attrs,
    ) -> Result<Vec<Item>, InfraError> {
        let expression = match key_condition {
            Some(c) => format!("pk = :pk AND {c}"),
            None => "pk = :pk".to_owned(),
        };
        let mut values = values;
        values.insert(":pk".to_owned(), s(pk));
        let now = self.now();
        let mut items = Vec::new();
        let mut start: Option<Attrs> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .key_condition_expression(&expression)
                .set_expression_attribute_values(Some(values.clone()))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error("dynamodb", "Query", e))?;
            for attrs in out.items() {
                let item = decode(attrs)?;
                if is_live(&item, now) {
                    items.push(item);
                }
            }
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        Ok(items)
    }
}

#[async_trait]
impl Store for DynamoStore {
    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, InfraError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("dynamodb", "GetItem", e))?;
        match out.item() {
            Some(attrs) => {
                let item = decode(attrs)?;
                Ok(is_live(&item, self.now()).then_some(item))
            }
            None => Ok(None),
        }
    }

    async fn put(&self, item: &Item, cond: Cond) -> Result<(), InfraError> {
        let req = self.client.put_item().table_name(&self.table).set_item(Some(encode(item)?));
        send_conditional!(req, condition(cond, self.now()), "PutItem")
    }

    async fn delete(&self, pk: &str, sk: &str, cond: Cond) -> Result<(), InfraError> {
        let req = self.client.delete_item().table_name(&self.table).set_key(Some(key(pk, sk)));
        send_conditional!(req, condition(cond, self.now()), "DeleteItem")
    }

    async fn query(&self, pk: &str, sk_prefix: &str) -> Result<Vec<Item>, InfraError> {
        // DynamoDB rejects an empty key value, and an empty prefix matches everything anyway.
        if sk_prefix.is_empty() {
            return self.query_where(pk, None, HashMap::new()).await;
        }
        self.query_where(pk, Some("begins_with(sk, :p)"), HashMap::from([(":p".to_owned(), s(sk_prefix))]))
            .await
    }

    async fn query_between(&self, pk: &str, from: &str, to: &str) -> Result<Vec<Item>, InfraError> {
        // DynamoDB rejects BETWEEN with from > to and empty key values; sort keys are never
        // empty, so `from = ""` means "from the start" and `to = ""` matches nothing.
        if to.is_empty() || from > to {
            return Ok(Vec::new());
        }
        if from.is_empty() {
            return self.query_where(pk, Some("sk <= :to"), HashMap::from([(":to".to_owned(), s(to))])).await;
        }
        let values = HashMap::from([(":from".to_owned(), s(from)), (":to".to_owned(), s(to))]);
        self.query_where(pk, Some("sk BETWEEN :from AND :to"), values).await
    }

    async fn ping(&self) -> Result<(), InfraError> {
        // A data-plane read: the role the functions run with needs nothing more.
        self.client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key("PING", "PING")))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sdk_error("dynamodb", "GetItem", e))
    }
}
