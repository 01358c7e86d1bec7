//! Prices that may change while the process runs.

use std::sync::{Arc, PoisonError, RwLock};

use super::PriceCatalog;

/// The prices the stores and sinks use: a [`PriceCatalog`] that an application may
/// replace, whole, while they run (an admin changed a price; the new one applies from the
/// next record on — the records already priced keep their snapshot).
///
/// Clones share the catalog. A fixed catalog converts into one (`Arc<PriceCatalog>` or
/// `PriceCatalog` `.into()`), so a store given a catalog prices with it for good.
///
/// ```
/// use usage_layer::pricing::{PriceCatalog, Pricing};
/// use usage_layer::Provider;
///
/// let pricing = Pricing::new(PriceCatalog::defaults());
/// let shared = pricing.clone();
/// pricing.replace(PriceCatalog::empty());
/// assert!(shared.current().lookup(&Provider::PLAN, None, "claude-sonnet-4-5").is_none());
/// ```
#[derive(Clone, Debug)]
pub struct Pricing(Arc<RwLock<Arc<PriceCatalog>>>);

impl Pricing {
    /// Prices from `catalog` until [`replace`](Self::replace)d.
    pub fn new(catalog: PriceCatalog) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(catalog))))
    }

    /// The catalog now (a record is priced with one catalog from start to end).
    pub fn current(&self) -> Arc<PriceCatalog> {
        Arc::clone(&self.0.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Prices with `catalog` from now on, wherever this pricing is shared.
    pub fn replace(&self, catalog: PriceCatalog) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(catalog);
    }
}

impl From<PriceCatalog> for Pricing {
    fn from(catalog: PriceCatalog) -> Self {
        Self::new(catalog)
    }
}

impl From<Arc<PriceCatalog>> for Pricing {
    fn from(catalog: Arc<PriceCatalog>) -> Self {
        Self(Arc::new(RwLock::new(catalog)))
    }
}
