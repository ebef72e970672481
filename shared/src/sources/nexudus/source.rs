//! What a Nexudus webhook means for a subject's profile and pass entitlements.
//!
//! Webhooks are hints (design §2.1): the worker reads the customer's passes from the REST API
//! (Nexudus has no webhook for passes; `AccessControlUpdate` fires when one changes) and, for
//! tenants whose webhooks are not signed, the customer too, so a forged body can never grant.

use async_trait::async_trait;
use serde_json::Value;

use super::client::NexudusClient;
use super::dto::{Coworker, CoworkerTimePass};
use crate::error::WorkError;
use crate::model::{
    Email, Entitlement, EntitlementKind, EntitlementState, Instant, ItemKind, ItemRef, Profile, SourceKind,
    SubjectKey, Window,
};
use crate::sources::{Hint, Listed, Listing, Proof, Source};
use crate::store::Records;

/// The Nexudus source of one tenant.
pub struct NexudusSource {
    client: NexudusClient,
}

impl NexudusSource {
    pub fn new(client: NexudusClient) -> Self {
        Self { client }
    }

    pub fn client(&self) -> &NexudusClient {
        &self.client
    }
}

fn coworker_id(subject: &SubjectKey) -> Result<i64, WorkError> {
    subject
        .person
        .parse()
        .map_err(|_| WorkError::BadMessage(format!("Nexudus person id {:?} is not a number", subject.person)))
}

/// A coworker DTO in the payload (not a pass or booking, which name their customer in `CoworkerId`).
fn payload_coworker(payload: Option<&Value>) -> Option<Coworker> {
    let p = payload?;
    if p.get("CoworkerId").is_some() {
        return None;
    }
    serde_json::from_value(p.clone()).ok()
}

/// The profile a coworker record describes.
pub fn profile_of(c: &Coworker, seen_at: Instant) -> Profile {
    Profile {
        email: c.email.as_deref().and_then(|e| Email::parse(e).ok()),
        name: c.full_name.clone().unwrap_or_default(),
        source_version: Some(c.updated_on.unwrap_or(seen_at)),
        deleted: false,
    }
}

/// The entitlement a customer's pass gives: active until `ExpireDate`, ended once `Used`.
pub fn pass_entitlement(p: &CoworkerTimePass, seen_at: Instant) -> Entitlement {
    Entitlement {
        kind: EntitlementKind::Pass,
        id: p.id.to_string(),
        item: ItemRef { kind: ItemKind::Pass, id: p.time_pass_id.to_string() },
        label: p.time_pass_name.clone().unwrap_or_else(|| format!("pass {}", p.time_pass_id)),
        window: Window::new(None, p.expire_date),
        state: if p.used {
            EntitlementState::Ended { reason: "marked Used in Nexudus".into() }
        } else {
            EntitlementState::Active
        },
        source_version: p.updated_on.unwrap_or(seen_at),
    }
}

#[async_trait]
impl Source for NexudusSource {
    fn kind(&self) -> SourceKind {
        SourceKind::Nexudus
    }

    async fn refresh(&self, subject: &SubjectKey, hint: &Hint, records: &Records) -> Result<(), WorkError> {
        let id = coworker_id(subject)?;
        let now = records.now();

        if hint.action == "CoworkerDelete" {
            // Revoking needs only a hint: the person and everything they held are gone.
            let version = payload_coworker(hint.payload.as_ref())
                .and_then(|c| c.updated_on)
                .unwrap_or(hint.received_at);
            let mut profile = records.profile(subject).await?.unwrap_or(Profile {
                email: None,
                name: String::new(),
                source_version: None,
                deleted: true,
            });
            profile.deleted = true;
            profile.source_version = Some(profile.source_version.map_or(version, |v| v.max(version)));
            records.save_profile(subject, &profile).await?;
            end_missing(records, subject, &[], now, "customer deleted in Nexudus").await?;
            return Ok(());
        }

        // Who: a signed payload is believed; otherwise the REST API is the proof.
        let coworker = match (hint.proof, payload_coworker(hint.payload.as_ref())) {
            (Proof::Signature, Some(c)) if c.id == id => Some(c),
            _ => self.client.coworker(id).await?,
        };
        match coworker {
            Some(c) => {
                records.save_profile(subject, &profile_of(&c, now)).await?;
            }
            None => {
                // Unknown to Nexudus: nothing may be granted; anything held is revoked.
                let gone =
                    Profile { email: None, name: String::new(), source_version: Some(now), deleted: true };
                records.save_profile(subject, &gone).await?;
                end_missing(records, subject, &[], now, "customer not found in Nexudus").await?;
                return Ok(());
            }
        }

        // What: the customer's passes, always from the REST API.
        let passes = self.client.time_passes_for(id).await?;
        let mut present = Vec::with_capacity(passes.len());
        for pass in passes.iter().filter(|p| p.coworker_id == id) {
            let ent = pass_entitlement(pass, now);
            present.push(ent.key());
            records.save_entitlement(subject, &ent).await?;
        }
        end_missing(records, subject, &present, now, "pass removed in Nexudus").await?;
        Ok(())
    }

    async fn list(
        &self,
        since: Option<Instant>,
        now: Instant,
        _records: &Records,
    ) -> Result<Listing, WorkError> {
        // Nexudus filters by minute; a minute of overlap costs nothing (merging is monotonic).
        let from = since.map(|t| (t - chrono::Duration::minutes(1)).format("%Y-%m-%dT%H:%M").to_string());
        let coworkers = self.client.all_coworkers(from.as_deref()).await?;
        let passes = self.client.all_time_passes(from.as_deref()).await?;
        let mut people: std::collections::BTreeMap<i64, Listed> = coworkers
            .iter()
            .map(|c| {
                (
                    c.id,
                    Listed {
                        person: c.id.to_string(),
                        profile: Some(profile_of(c, now)),
                        entitlements: Vec::new(),
                    },
                )
            })
            .collect();
        for pass in &passes {
            match people.get_mut(&pass.coworker_id) {
                Some(person) => person.entitlements.push(pass_entitlement(pass, now)),
                // In a full listing, a pass of a customer not listed belongs to nobody Portier can
                // grant; in an incremental one, the customer simply did not change.
                None if since.is_some() => {
                    people.insert(
                        pass.coworker_id,
                        Listed {
                            person: pass.coworker_id.to_string(),
                            profile: None,
                            entitlements: vec![pass_entitlement(pass, now)],
                        },
                    );
                }
                None => {}
            }
        }
        Ok(Listing { complete: since.is_none(), people: people.into_values().collect() })
    }
}

/// Marks active pass entitlements that the source no longer lists as ended.
async fn end_missing(
    records: &Records,
    subject: &SubjectKey,
    present: &[String],
    now: Instant,
    reason: &str,
) -> Result<(), WorkError> {
    for ent in records.entitlements(subject).await? {
        if ent.kind == EntitlementKind::Pass && ent.is_active() && !present.contains(&ent.key()) {
            records.save_entitlement(subject, &ent.ended(reason, now)).await?;
        }
    }
    Ok(())
}
