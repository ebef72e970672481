//! The tenant rules that turn Nexudus records into windows, and which records it reads.

use chrono::Duration;

use crate::localtime::Zone;
use crate::model::ItemKind;

/// The tenant rules that turn Nexudus records into windows.
#[derive(Debug, Clone)]
pub struct NexudusRules {
    /// Access starts this long before a booking (`booking_lead_minutes`).
    pub booking_lead: Duration,
    /// … and ends this long after it (`booking_lag_minutes`).
    pub booking_lag: Duration,
    /// The tenant's time zone: a visit lasts to the end of the local day.
    pub zone: Zone,
    /// The entity kinds the tenant maps: only those are read.
    pub reads: Reads,
}

/// Which Nexudus entities a tenant's mappings can turn into access. A kind no mapping uses is
/// never read (a pass-only tenant reads no bookings or contracts: Nexudus allows 120 calls a
/// minute), and what was stored of it is ended, so a mapping added later never acts on a
/// record nobody kept up to date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reads {
    pub passes: bool,
    pub bookings: bool,
    /// Contracts, their desks and offices, and the teams that share them.
    pub contracts: bool,
}

impl Reads {
    pub const ALL: Reads = Reads { passes: true, bookings: true, contracts: true };

    pub fn of(mappings: &[crate::model::Mapping]) -> Self {
        let maps = |kinds: &[ItemKind]| mappings.iter().any(|m| kinds.contains(&m.item.kind));
        Reads {
            passes: maps(&[ItemKind::Pass]),
            bookings: maps(&[ItemKind::Resource]),
            contracts: maps(&[ItemKind::Desk, ItemKind::Office]),
        }
    }
}

impl NexudusRules {
    pub fn of(policy: &crate::config::Policy, zone: Zone, mappings: &[crate::model::Mapping]) -> Self {
        Self {
            booking_lead: Duration::minutes(i64::from(policy.booking_lead_minutes)),
            booking_lag: Duration::minutes(i64::from(policy.booking_lag_minutes)),
            zone,
            reads: Reads::of(mappings),
        }
    }
}
