//! [`ExporterBuilder`]: histogram buckets, global labels and upkeep, checked when the recorder
//! is built.

use std::time::Duration;

use super::{ExporterError, Matcher, PrometheusExporter, PrometheusRecorder};
use crate::metrics::names;

/// Bucket bounds, in seconds, for the crate's duration histograms (`conn_hygiene_*_seconds`):
/// from a millisecond (a lease returned at once, a refused connection) to an hour (a long-lived
/// keep-alive connection), dense around the usual idle timeouts and leak thresholds.
pub const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
    600.0, 1800.0, 3600.0,
];

/// Bucket bounds for requests served per connection: `1` alone is its own bucket, since a
/// mass of one-request connections is the signature of a client that does not reuse them.
pub const REQUESTS_PER_CONNECTION_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 10000.0,
];

/// Bucket bounds, in seconds, for what one census sample costs
/// (`conn_hygiene_sampler_duration_seconds`): 100 µs (the counters tier) to 5 s (a full walk of
/// a very large socket table).
pub const SAMPLE_COST_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// How often histogram upkeep runs unless told otherwise.
const DEFAULT_UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Configures a [`PrometheusExporter`]; see the [module docs](super).
#[derive(Debug, Clone)]
pub struct ExporterBuilder {
    buckets: Vec<(Matcher, Vec<f64>)>,
    global_labels: Vec<(String, String)>,
    upkeep_interval: Option<Duration>,
}

impl Default for ExporterBuilder {
    fn default() -> Self {
        Self {
            buckets: Vec::new(),
            global_labels: Vec::new(),
            upkeep_interval: Some(DEFAULT_UPKEEP_INTERVAL),
        }
    }
}

impl ExporterBuilder {
    /// Histogram buckets for the metrics `matcher` selects, added to (and, for the same matcher,
    /// replacing) the crate's defaults. Checked when built: at least one bound, all finite and
    /// strictly increasing. Histograms that no matcher selects render as summaries.
    ///
    /// Default: [`DURATION_BUCKETS`] for connection and lease durations (and, as a fallback,
    /// any other `conn_hygiene_` histogram), [`REQUESTS_PER_CONNECTION_BUCKETS`] for the
    /// requests-per-connection histograms, [`SAMPLE_COST_BUCKETS`] for the census sample cost.
    pub fn buckets(mut self, matcher: Matcher, bounds: &[f64]) -> Self {
        self.buckets.push((matcher, bounds.to_vec()));
        self
    }

    /// A label added to every series (`instance`-like labels are better set by Prometheus; this
    /// is for values only the process knows, such as a build version). Default: none.
    pub fn global_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.global_labels.push((key.into(), value.into()));
        self
    }

    /// How often histogram samples are drained into their buckets in the background, so memory
    /// stays bounded between scrapes. The task runs on the Tokio runtime current at build time
    /// (none outside a runtime; every render drains as well) and ends once the exporter and
    /// every service cloned from it are dropped. `None` turns it off. Default: 5 s.
    pub fn upkeep_interval(mut self, interval: impl Into<Option<Duration>>) -> Self {
        self.upkeep_interval = interval.into();
        self
    }

    /// Builds the recorder without installing it, and an exporter rendering it. The crate's
    /// descriptions are already recorded. Use the recorder with `metrics::with_local_recorder`,
    /// or install it yourself.
    pub fn build(self) -> Result<(PrometheusRecorder, PrometheusExporter), ExporterError> {
        let upkeep = self.upkeep_interval;
        let recorder = self.build_recorder()?;
        let exporter = PrometheusExporter::new(recorder.handle(), upkeep);
        Ok((recorder, exporter))
    }

    /// Builds the recorder, publishes the crate's descriptions, and installs it as the global
    /// `metrics` recorder. Fails with [`ExporterError::RecorderAlreadyInstalled`] when the process
    /// already has one.
    pub fn install(self) -> Result<PrometheusExporter, ExporterError> {
        let upkeep = self.upkeep_interval;
        let recorder = self.build_recorder()?;
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder)
            .map_err(|_| ExporterError::RecorderAlreadyInstalled)?;
        // Listeners, upstreams, lease trackers and samplers built before this count from now
        // on into this recorder, with what they counted until now.
        crate::metrics::bind_deferred();
        Ok(PrometheusExporter::new(handle, upkeep))
    }

    fn build_recorder(self) -> Result<PrometheusRecorder, ExporterError> {
        if self.upkeep_interval == Some(Duration::ZERO) {
            return Err(ExporterError::ZeroUpkeepInterval);
        }
        let mut buckets = default_buckets();
        buckets.extend(self.buckets);
        let mut builder = metrics_exporter_prometheus::PrometheusBuilder::new();
        for (matcher, bounds) in buckets {
            if bounds.is_empty() {
                return Err(ExporterError::EmptyBuckets { matcher });
            }
            let increasing = bounds.windows(2).all(|w| w[0] < w[1]);
            if !increasing || bounds.iter().any(|b| !b.is_finite()) {
                return Err(ExporterError::InvalidBuckets { matcher, bounds });
            }
            // Cannot fail: the only error is empty bounds, checked above.
            builder = builder
                .set_buckets_for_metric(matcher.clone(), &bounds)
                .map_err(|_| ExporterError::EmptyBuckets { matcher })?;
        }
        for (key, value) in self.global_labels {
            builder = builder.add_global_label(key, value);
        }
        let recorder = builder.build_recorder();
        metrics::with_local_recorder(&recorder, crate::metrics::describe);
        Ok(recorder)
    }
}

/// The crate's defaults. Matchers apply full first, then prefix, then suffix, so the explicit
/// names win over the `conn_hygiene_` fallback.
fn default_buckets() -> Vec<(Matcher, Vec<f64>)> {
    let full = |name: &str, bounds: &[f64]| (Matcher::Full(name.to_owned()), bounds.to_vec());
    vec![
        full(names::SERVER_CONNECTION_DURATION_SECONDS, DURATION_BUCKETS),
        full(names::LEASE_DURATION_SECONDS, DURATION_BUCKETS),
        full(names::SAMPLER_DURATION_SECONDS, SAMPLE_COST_BUCKETS),
        full(
            names::SERVER_REQUESTS_PER_CONNECTION,
            REQUESTS_PER_CONNECTION_BUCKETS,
        ),
        full(
            names::CLIENT_REQUESTS_PER_CONNECTION,
            REQUESTS_PER_CONNECTION_BUCKETS,
        ),
        // Any other histogram of the crate is a duration in seconds.
        (
            Matcher::Prefix("conn_hygiene_".to_owned()),
            DURATION_BUCKETS.to_vec(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_settings_are_checked() {
        let err = PrometheusExporter::builder()
            .buckets(Matcher::Full("x_seconds".into()), &[])
            .build()
            .unwrap_err();
        assert_eq!(
            err,
            ExporterError::EmptyBuckets {
                matcher: Matcher::Full("x_seconds".into())
            }
        );
        assert!(err.to_string().contains("x_seconds"), "{err}");

        let err = PrometheusExporter::builder()
            .buckets(Matcher::Suffix("_bytes".into()), &[1.0, 1.0, 2.0])
            .build()
            .unwrap_err();
        assert!(
            matches!(err, ExporterError::InvalidBuckets { ref bounds, .. } if bounds == &[1.0, 1.0, 2.0])
        );
        assert!(err.to_string().contains("[1.0, 1.0, 2.0]"), "{err}");

        let err = PrometheusExporter::builder()
            .buckets(Matcher::Suffix("_bytes".into()), &[1.0, f64::NAN])
            .build()
            .unwrap_err();
        assert!(matches!(err, ExporterError::InvalidBuckets { .. }));

        let err = PrometheusExporter::builder()
            .upkeep_interval(Some(Duration::ZERO))
            .build()
            .unwrap_err();
        assert_eq!(err, ExporterError::ZeroUpkeepInterval);
        assert!(err.to_string().contains("upkeep_interval"), "{err}");
    }

    #[test]
    fn default_buckets_are_valid_and_increasing() {
        for (matcher, bounds) in default_buckets() {
            assert!(!bounds.is_empty(), "{matcher:?}");
            assert!(bounds.windows(2).all(|w| w[0] < w[1]), "{matcher:?}");
        }
    }
}
