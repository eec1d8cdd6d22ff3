//! Changes to a running pipeline, made off the packet path and applied by [`Pipeline::apply`]
//! between two bursts.
//!
//! Everything an update carries is built, validated and allocated by the control side; applying
//! it is a few pointer swaps and copies that cannot fail and never allocate or free. What the
//! update replaced travels back inside the same value (the old ACL table, the old signature
//! stage with its final hit counts), so the control side frees it once no worker can still use
//! it: the worker's acknowledgement is its quiescent point.

use crate::stage::acl::{AclStage, AclTable};
use crate::stage::flowspec::{FlowspecStage, FlowspecTable};
use crate::stage::ratelimit::ClassChange;
use crate::stage::signature::SignatureStage;
use crate::Pipeline;
use std::sync::Arc;

/// One change to a worker's pipeline. After [`Pipeline::apply`] it holds what was replaced.
pub enum Update {
    /// Install this ACL table (the pipeline gets an ACL stage if it had none). Comes back
    /// holding the table that was replaced (`None` if there was none, or if none was given).
    Acl(Option<Arc<AclTable>>),
    /// A reloaded policy, applied as one step: this ACL table (`None`: keep the current one)
    /// and this signature stage (`None`: no signature stage) as rule generation `generation`.
    /// Comes back holding the replaced table, the replaced stage with its final hit counts, and
    /// the generation it ran as.
    Rules {
        acl: Option<Arc<AclTable>>,
        generation: u64,
        stage: Option<SignatureStage>,
    },
    /// Change one per-source rate-limit class. Comes back with `applied` false when the
    /// pipeline has no rate-limit stage.
    RateClass { change: ClassChange, applied: bool },
    /// Rotate the SYN-cookie secret now. Comes back with `applied` false when the pipeline has
    /// no SYN-cookie stage.
    RotateCookie { applied: bool },
    /// Install this BGP FlowSpec table (the pipeline gets a FlowSpec stage if it had none).
    /// Comes back holding the replaced table (`None` if there was none).
    Flowspec(Option<Arc<FlowspecTable>>),
}

impl Pipeline {
    /// Applies `u`, leaving in it what it replaced (see [`Update`]). Call between bursts: no
    /// packet is ever judged half by the old and half by the new policy.
    pub fn apply(&mut self, u: &mut Update) {
        self.apply_inner(u);
        // An update may add a stage (the first FlowSpec table, a first ACL) or swap one out.
        self.refresh_run();
    }

    fn apply_inner(&mut self, u: &mut Update) {
        match u {
            Update::Acl(table) => self.install_acl(table),
            Update::Rules {
                acl,
                generation,
                stage,
            } => {
                self.install_acl(acl);
                std::mem::swap(&mut self.signature, stage);
                std::mem::swap(&mut self.rules_generation, generation);
            }
            Update::RateClass { change, applied } => {
                *applied = match &mut self.ratelimit {
                    Some(rl) => {
                        rl.apply_class(change);
                        true
                    }
                    None => false,
                };
            }
            Update::Flowspec(table) => {
                if let Some(new) = table.take() {
                    match &mut self.flowspec {
                        Some(stage) => {
                            *table = Some(Arc::clone(stage.table()));
                            stage.set_table(new);
                        }
                        None => self.flowspec = Some(FlowspecStage::new(new)),
                    }
                }
            }
            Update::RotateCookie { applied } => {
                *applied = match &mut self.syncookie {
                    Some(sc) => {
                        sc.rotate();
                        true
                    }
                    None => false,
                };
            }
        }
    }

    /// Swaps `table` in (creating the stage if there was none), leaving the old one in `table`.
    fn install_acl(&mut self, table: &mut Option<Arc<AclTable>>) {
        let Some(new) = table.take() else {
            return;
        };
        match &mut self.acl {
            Some(stage) => {
                *table = Some(Arc::clone(stage.table()));
                stage.set_table(new);
            }
            None => self.acl = Some(AclStage::new(new)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stage::ratelimit::{ClassLimit, LimitClass, LimitMode};
    use crate::{PipelineConfig, Policy, Verdict};

    fn policy(text: &str) -> Policy {
        let cfg: PipelineConfig = toml::from_str(text).expect("config");
        Policy::build(&cfg, 1_000_000_000, [1; 16]).expect("policy")
    }

    fn udp(src: [u8; 4]) -> Vec<u8> {
        let mut v = Vec::new();
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(src, [10, 0, 0, 1], 64)
            .udp(4000, 5000)
            .write(&mut v, b"x")
            .unwrap();
        v
    }

    fn run(p: &mut Pipeline, frame: &[u8]) -> Verdict {
        let mut buf = frame.to_vec();
        p.process(&mut buf, frame.len(), &crate::Meta::default())
    }

    #[test]
    fn acl_swap_returns_the_old_table_and_creates_the_stage() {
        let mut p = policy("").worker();
        let deny = Arc::new(
            toml::from_str::<crate::stage::acl::AclConfig>("deny = [\"192.0.2.0/24\"]")
                .unwrap()
                .build()
                .unwrap(),
        );
        assert_eq!(run(&mut p, &udp([192, 0, 2, 1])), Verdict::Forward);
        let mut u = Update::Acl(Some(Arc::clone(&deny)));
        p.apply(&mut u);
        assert!(
            matches!(u, Update::Acl(None)),
            "no stage before: nothing replaced"
        );
        assert!(matches!(
            run(&mut p, &udp([192, 0, 2, 1])),
            Verdict::Drop(_)
        ));
        let empty = Arc::new(
            toml::from_str::<crate::stage::acl::AclConfig>("")
                .unwrap()
                .build()
                .unwrap(),
        );
        let mut u = Update::Acl(Some(empty));
        p.apply(&mut u);
        let Update::Acl(Some(old)) = u else {
            panic!("the replaced table comes back")
        };
        assert!(Arc::ptr_eq(&old, &deny));
        assert_eq!(run(&mut p, &udp([192, 0, 2, 1])), Verdict::Forward);
    }

    #[test]
    fn rules_swap_stage_and_generation_together() {
        let mut p = policy("").worker();
        assert_eq!(p.rules_generation(), 0);
        let mut u = Update::Rules {
            acl: None,
            generation: 3,
            stage: None,
        };
        p.apply(&mut u);
        assert_eq!(p.rules_generation(), 3);
        let Update::Rules { generation, .. } = u else {
            unreachable!()
        };
        assert_eq!(generation, 0, "the generation that ran comes back");
    }

    #[test]
    fn rate_class_and_rotation_report_whether_a_stage_took_them() {
        let change = ClassChange::new(
            LimitClass::Other,
            Some(ClassLimit {
                rate: 1,
                burst: 1,
                mode: LimitMode::TokenBucket,
            }),
            1_000_000_000,
        )
        .unwrap();
        let mut none = policy("").worker();
        let mut u = Update::RateClass {
            change,
            applied: true,
        };
        none.apply(&mut u);
        assert!(matches!(u, Update::RateClass { applied: false, .. }));
        let mut rl = policy("[ratelimit]\n").worker();
        let mut u = Update::RateClass {
            change,
            applied: false,
        };
        rl.apply(&mut u);
        assert!(matches!(u, Update::RateClass { applied: true, .. }));
        assert_eq!(run(&mut rl, &udp([198, 51, 100, 1])), Verdict::Forward);
        assert!(matches!(
            run(&mut rl, &udp([198, 51, 100, 1])),
            Verdict::Drop(_)
        ));
        let mut u = Update::RotateCookie { applied: true };
        none.apply(&mut u);
        assert!(matches!(u, Update::RotateCookie { applied: false }));
        assert!(ClassChange::new(LimitClass::Aggregate, None, 1).is_err());
    }
}
