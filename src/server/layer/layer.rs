use tower_layer::Layer;

use super::TrackConnection;

/// Applies [`TrackConnection`] to a service.
#[derive(Debug, Clone, Copy, Default)]
pub struct TrackConnectionLayer {
    _priv: (),
}

impl TrackConnectionLayer {
    /// A new layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Layer<S> for TrackConnectionLayer {
    type Service = TrackConnection<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TrackConnection::new(inner)
    }
}
