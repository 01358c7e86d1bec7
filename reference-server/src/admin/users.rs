//! Users, access keys, budgets and prices (being written).

use std::sync::Arc;

use utoipa_axum::router::OpenApiRouter;

use crate::app::AppState;

/// The routes of this module.
pub(super) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
}
