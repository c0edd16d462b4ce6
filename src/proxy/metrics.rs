//! Counters and a gauge in the host's stats (Envoy: `/stats`, `/stats/prometheus`).
//!
//! Envoy shows them as `wasmcustom.finalite_*`; the `;decision=…` suffix becomes a
//! Prometheus label with the `stats_tags` snippet shipped in envoy/envoy.yaml.

use std::cell::Cell;

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

use crate::audit::{AuditRecord, Outcome};

pub struct Metrics {
    requests: Vec<(Outcome, u32)>,
    withheld: u32,
    transformed: u32,
    /// Resources withheld because the caller's SMART scopes do not grant them.
    resources_withheld: u32,
    failed_closed: u32,
    bytes_in: u32,
    bytes_out: u32,
    /// Gauge: the largest linear memory of finalite's VMs in this host (one VM per worker),
    /// so that an operator sees the memory a large body took, and that repeated ones do
    /// not add to it (a wasm memory never shrinks).
    vm_memory: u32,
    /// What this VM last wrote to `vm_memory`: the host is only called when it grew.
    vm_memory_reported: Cell<u64>,
}

/// The VM's linear memory now, in bytes.
fn linear_memory_bytes() -> u64 {
    const PAGE: u64 = 64 * 1024;
    core::arch::wasm32::memory_size(0) as u64 * PAGE
}

impl Metrics {
    /// Defines every counter once per VM; `None` if the host refuses one.
    pub fn define() -> Option<Metrics> {
        let counter = |name: &str| hostcalls::define_metric(MetricType::Counter, name).ok();
        let mut requests = Vec::new();
        for outcome in Outcome::ALL {
            requests.push((
                outcome,
                counter(&format!(
                    "finalite_requests_total;decision={}",
                    outcome.as_str()
                ))?,
            ));
        }
        Some(Metrics {
            requests,
            withheld: counter("finalite_fields_withheld_total")?,
            transformed: counter("finalite_fields_transformed_total")?,
            resources_withheld: counter("finalite_resources_withheld_total")?,
            failed_closed: counter("finalite_bodies_failed_closed_total")?,
            bytes_in: counter("finalite_body_bytes_in_total")?,
            bytes_out: counter("finalite_body_bytes_out_total")?,
            vm_memory: hostcalls::define_metric(MetricType::Gauge, "finalite_vm_memory_bytes")
                .ok()?,
            vm_memory_reported: Cell::new(0),
        })
    }

    pub fn record(&self, record: &AuditRecord) {
        let add = |id: u32, value: u64| {
            if value > 0 {
                let _ = hostcalls::increment_metric(id, i64::try_from(value).unwrap_or(i64::MAX));
            }
        };
        if let Some((_, id)) = self.requests.iter().find(|(o, _)| *o == record.outcome) {
            add(*id, 1);
        }
        add(self.withheld, record.withheld.total());
        add(self.transformed, record.transformed.total());
        if let Some(resources) = &record.withheld_resources {
            add(self.resources_withheld, resources.total());
        }
        if record.outcome == Outcome::FailedClosed {
            add(self.failed_closed, 1);
        }
        add(self.bytes_in, record.bytes_in);
        add(self.bytes_out, record.bytes_out);
        self.report_memory();
    }

    /// Raises the memory gauge to this VM's linear memory if it is larger; another VM may
    /// have reported more, which stays.
    pub fn report_memory(&self) {
        let size = linear_memory_bytes();
        if size <= self.vm_memory_reported.get() {
            return;
        }
        self.vm_memory_reported.set(size);
        if hostcalls::get_metric(self.vm_memory).is_ok_and(|current| current >= size) {
            return;
        }
        if let Err(status) = hostcalls::record_metric(self.vm_memory, size) {
            log::debug!("could not record finalite_vm_memory_bytes: {status:?}");
        }
    }
}
