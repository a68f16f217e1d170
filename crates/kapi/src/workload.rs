//! `api run`: a workload of jobs (objects made from templates across namespaces, waits for
//! readiness, churn of namespaces, deletes, pauses), read and checked by [`spec`] before
//! anything is created, and run by [`run`].

pub mod run;
pub mod spec;
