//! Validation before any work: everything a run needs, read and checked
//! once when it starts, so that a misconfigured campaign fails with one
//! clear reason and queues nothing.
//!
//! Checked, in this order (the first failure is the run's reason):
//! the account exists; the list exists, belongs to the account and is
//! active; some live daemon can send through the list's provider; the
//! schedule names at least one audience and each exists, belongs to the
//! account and has a well-formed filter; the creative exists, belongs to
//! the account, and has variants with unique plain keys, a positive total
//! weight and bodies whose placeholders are all known (a contact who lacks a
//! value for a placeholder without default is skipped as `missing_field`);
//! the list's TCPA window and default zone are usable.

use crate::config::Config;
use crate::domain::audience::is_plain_name;
use crate::domain::*;
use crate::rules::eligibility::{ListRules, ScheduleRules};
use crate::rules::placeholders::{self, Template};
use crate::rules::variants::ArmStats;
use crate::rules::window::LocalWindow;
use crate::store::{StoreError, Stores};
use std::collections::HashSet;

/// Why a run cannot start. The text is stored on the run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("account {0} does not exist")]
    AccountMissing(AccountId),
    #[error("sending list {0} does not exist")]
    ListMissing(SendingListId),
    #[error("sending list {0} belongs to another account")]
    ListOfOtherAccount(SendingListId),
    #[error("sending list {0} is paused")]
    ListPaused(SendingListId),
    #[error("no live daemon can send through the list's provider ({0}): set its credentials")]
    ProviderUnavailable(String),
    #[error("the schedule has no audience")]
    NoAudience,
    #[error("audience {0} does not exist")]
    AudienceMissing(AudienceId),
    #[error("audience {0} belongs to another account")]
    AudienceOfOtherAccount(AudienceId),
    #[error("audience {id}: {reason}")]
    AudienceInvalid { id: AudienceId, reason: String },
    #[error("creative {0} does not exist")]
    CreativeMissing(CreativeId),
    #[error("creative {0} belongs to another account")]
    CreativeOfOtherAccount(CreativeId),
    #[error("creative {0} has no variant")]
    NoVariant(CreativeId),
    #[error("variant key {0:?}: 1 to 64 letters, digits, '_' or '-', unique in the creative")]
    BadVariantKey(String),
    #[error("variant {key}: {reason}")]
    BadVariantBody { key: String, reason: String },
    #[error("every variant has weight 0")]
    NoWeight,
    #[error("the list's TCPA window is unusable: {0}")]
    BadWindow(String),
    #[error("time zone {0:?} is not an IANA time zone name")]
    BadZone(String),
}

/// What validation needs besides the stores: who can send what.
#[derive(Debug, Clone, Default)]
pub struct Capabilities {
    /// Provider keys (`kind:credentials`) some live daemon can send through.
    pub providers: HashSet<String>,
}

/// One variant, compiled.
#[derive(Debug, Clone)]
pub struct PlannedVariant {
    pub key: String,
    pub template: Template,
    pub weight: u32,
}

/// A validated run: everything the evaluation reads.
#[derive(Debug, Clone)]
pub struct Plan {
    pub schedule: Schedule,
    pub account: Account,
    pub list: SendingList,
    pub creative: MessageCreative,
    pub audiences: Vec<Audience>,
    pub variants: Vec<PlannedVariant>,
    pub list_rules: ListRules,
    pub schedule_rules: ScheduleRules,
    /// Set when the creative tracks links.
    pub link_base: Option<String>,
    /// Thompson sampling's evidence, one per variant (None: weighted split).
    pub arms: Option<Vec<ArmStats>>,
    pub exploration_floor: f64,
}

impl Plan {
    pub fn filters(&self) -> Vec<AudienceFilter> {
        self.audiences.iter().map(|a| a.filter.clone()).collect()
    }

    pub fn weights(&self) -> Vec<u32> {
        self.variants.iter().map(|v| v.weight).collect()
    }
}

/// Checks a creative as it would be saved: keys, weights, placeholders.
pub fn check_creative(c: &MessageCreative) -> Result<Vec<PlannedVariant>, PlanError> {
    if c.variants.is_empty() {
        return Err(PlanError::NoVariant(c.id));
    }
    let mut keys = HashSet::new();
    let mut out = Vec::with_capacity(c.variants.len());
    for v in &c.variants {
        if !is_plain_name(&v.key) || !keys.insert(v.key.as_str()) {
            return Err(PlanError::BadVariantKey(v.key.clone()));
        }
        if v.body.trim().is_empty() {
            return Err(PlanError::BadVariantBody {
                key: v.key.clone(),
                reason: "the body is empty".into(),
            });
        }
        let template = placeholders::parse(&v.body).map_err(|e| PlanError::BadVariantBody {
            key: v.key.clone(),
            reason: e.to_string(),
        })?;
        out.push(PlannedVariant {
            key: v.key.clone(),
            template,
            weight: v.weight,
        });
    }
    if out.iter().all(|v| v.weight == 0) {
        return Err(PlanError::NoWeight);
    }
    Ok(out)
}

/// Either the store failed (retry later) or the campaign is invalid (the
/// run fails with the reason).
#[derive(Debug, Clone, thiserror::Error)]
pub enum PrepareError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Invalid(#[from] PlanError),
}

/// Reads and validates everything a run of `schedule` needs.
pub async fn prepare(
    stores: &Stores,
    config: &Config,
    schedule: &Schedule,
    caps: &Capabilities,
) -> Result<Plan, PrepareError> {
    let account = stores
        .accounts
        .get_account(schedule.account)
        .await?
        .ok_or(PlanError::AccountMissing(schedule.account))?;
    let list = stores
        .lists
        .get_list(schedule.sending_list)
        .await?
        .ok_or(PlanError::ListMissing(schedule.sending_list))?;
    if list.account != schedule.account {
        return Err(PlanError::ListOfOtherAccount(list.id).into());
    }
    if list.status != ListStatus::Active {
        return Err(PlanError::ListPaused(list.id).into());
    }
    let key = list.provider.key();
    if !caps.providers.contains(&key) {
        return Err(PlanError::ProviderUnavailable(key).into());
    }
    if schedule.audiences.is_empty() {
        return Err(PlanError::NoAudience.into());
    }
    let mut audiences = Vec::with_capacity(schedule.audiences.len());
    for id in &schedule.audiences {
        let a = stores
            .contacts
            .get_audience(*id)
            .await?
            .ok_or(PlanError::AudienceMissing(*id))?;
        if a.account != schedule.account {
            return Err(PlanError::AudienceOfOtherAccount(*id).into());
        }
        a.filter
            .validate()
            .map_err(|reason| PlanError::AudienceInvalid { id: *id, reason })?;
        audiences.push(a);
    }
    let creative = stores
        .schedules
        .get_creative(schedule.creative)
        .await?
        .ok_or(PlanError::CreativeMissing(schedule.creative))?;
    if creative.account != schedule.account {
        return Err(PlanError::CreativeOfOtherAccount(creative.id).into());
    }
    let variants = check_creative(&creative)?;
    let window = LocalWindow::from_tcpa(&list.tcpa_window)
        .map_err(|e| PlanError::BadWindow(e.to_string()))?;
    let default_zone = list
        .default_time_zone
        .clone()
        .unwrap_or_else(|| config.scheduler.default_time_zone.clone());
    if default_zone.parse::<chrono_tz::Tz>().is_err() {
        return Err(PlanError::BadZone(default_zone).into());
    }
    let arms = match schedule.variant_selection {
        VariantSelection::Weighted => None,
        VariantSelection::Thompson => {
            let stats = stores.schedules.variant_stats(creative.id).await?;
            Some(
                variants
                    .iter()
                    .map(|v| {
                        stats
                            .iter()
                            .find(|s| s.variant == v.key)
                            .map_or(ArmStats::default(), |s| ArmStats {
                                sends: s.sends,
                                clicks: s.clicked,
                            })
                    })
                    .collect(),
            )
        }
    };
    Ok(Plan {
        list_rules: ListRules {
            cooldown_secs: list.cooldown_secs,
            window,
            default_zone,
        },
        schedule_rules: ScheduleRules {
            exclude_in_workflow: schedule.exclude_in_workflow,
            defer_outside_window: schedule.defer_outside_window,
        },
        link_base: creative
            .track_links
            .then(|| config.link_base_url().to_string()),
        arms,
        exploration_floor: config.scheduler.exploration_floor,
        schedule: schedule.clone(),
        account,
        list,
        creative,
        audiences,
        variants,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creative(variants: &[(&str, &str, u32)]) -> MessageCreative {
        MessageCreative {
            id: CreativeId::new(),
            account: AccountId::new(),
            name: "c".into(),
            variants: variants
                .iter()
                .map(|(k, b, w)| Variant {
                    key: (*k).into(),
                    body: (*b).into(),
                    weight: *w,
                })
                .collect(),
            track_links: false,
            created_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn a_creative_is_checked_before_any_work() {
        assert!(check_creative(&creative(&[("A", "Hi {{first_name|there}}", 1)])).is_ok());
        assert!(matches!(
            check_creative(&creative(&[])),
            Err(PlanError::NoVariant(_))
        ));
        assert_eq!(
            check_creative(&creative(&[("A", "x", 1), ("A", "y", 1)])).unwrap_err(),
            PlanError::BadVariantKey("A".into())
        );
        assert_eq!(
            check_creative(&creative(&[("a.b", "x", 1)])).unwrap_err(),
            PlanError::BadVariantKey("a.b".into())
        );
        assert!(matches!(
            check_creative(&creative(&[("A", "Hi {{nickname}}", 1)])),
            Err(PlanError::BadVariantBody { .. })
        ));
        assert_eq!(
            check_creative(&creative(&[("A", "x", 0), ("B", "y", 0)])).unwrap_err(),
            PlanError::NoWeight
        );
    }
}
