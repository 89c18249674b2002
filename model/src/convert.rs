//! Conversions between these types and bindings generated from the WIT.
//!
//! Host bindings (`wasmtime::component::bindgen!`) and guest bindings
//! (`wit_bindgen::generate!`) produce different Rust types with the same
//! names and fields. [`wit_conversions!`] writes the moves between them once,
//! for both. Values are moved field by field; nothing is re-encoded.

/// Declares a `Conv` trait in the calling module and implements it both ways
/// between this crate's types and the generated `syncline:canonical/types`
/// module aliased as `$w`.
///
/// ```ignore
/// use bindings::syncline::canonical::types as wit;
/// syncline_model::wit_conversions!(wit);
/// let m: wit::Message = model_message.conv();
/// ```
#[macro_export]
macro_rules! wit_conversions {
    ($w:ident) => {
        /// A move from one representation of a canonical value to another.
        pub trait Conv<T> {
            /// Converts `self` into `T`.
            fn conv(self) -> T;
        }

        $crate::__conv_identity!(String, f64, u8, u32, u64, bool);

        impl<A: Conv<B>, B> Conv<Vec<B>> for Vec<A> {
            fn conv(self) -> Vec<B> {
                self.into_iter().map(Conv::conv).collect()
            }
        }

        impl<A: Conv<B>, B> Conv<Option<B>> for Option<A> {
            fn conv(self) -> Option<B> {
                self.map(Conv::conv)
            }
        }

        $crate::__conv_records!($w;
            Extension { key, value }
            Header { key, value }
            Item { id, description, base_uom, pack_size, product_family, lifecycle, extensions }
            Location { id, kind, region, business_unit, extensions }
            Supplier { id, name, lead_time_days, extensions }
            UomConversion { item, from_uom, to_uom, factor, extensions }
            TimeBucket { start, granularity }
            Forecast { item, location, bucket, quantity, uom, forecast_version, scenario, channel,
                       source_engine, extensions }
            ReplenishmentRecommendation { id, item, location, quantity, uom, need_by, source, reason,
                                          priority, extensions }
            InventoryPosition { item, location, on_hand, allocated, in_transit, available, uom, as_of,
                                extensions }
            PurchaseRequisition { id, item, location, supplier, quantity, uom, need_by, order_by,
                                  recommendation, rule, extensions }
            TransferProposal { id, item, from_location, to_location, quantity, uom, need_by, ship_by,
                               recommendation, rule, extensions }
            ExecutionStatus { order_ref, kind, status, quantity, uom, expected_date, recommendation,
                              extensions }
            EntityRef { kind, id }
            Exception { code, severity, domain, entities, text, queue, extensions }
            Raw { content_type, data }
            Message { id, correlation_id, causation_id, tenant, source_system, schema_version,
                      occurred_at, priority, idempotency_key, headers, body }
        );

        $crate::__conv_enums!($w;
            Lifecycle { Planned, Active, PhaseOut, Discontinued }
            LocationKind { Warehouse, Dc, Store, SupplierSite }
            Granularity { Day, Week, Month }
            OrderKind { Purchase, Transfer }
            OrderStatus { Confirmed, Delayed, Received, Short, Cancelled }
            Severity { Info, Warning, Error, Critical }
            Priority { Low, Normal, High, Critical }
        );

        $crate::__conv_variants!($w;
            SourceRef { Supplier, Location }
            Body { Item, Location, Supplier, UomConversion, Forecast, ReplenishmentRecommendation,
                   InventoryPosition, PurchaseRequisition, TransferProposal, ExecutionStatus,
                   Exception, Raw }
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conv_identity {
    ($($t:ty),*) => {$(
        impl Conv<$t> for $t {
            #[inline]
            fn conv(self) -> $t {
                self
            }
        }
    )*};
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conv_records {
    ($w:ident; $($name:ident { $($f:ident),* $(,)? })*) => {$(
        impl Conv<$w::$name> for $crate::$name {
            #[inline]
            fn conv(self) -> $w::$name {
                $w::$name { $($f: Conv::conv(self.$f)),* }
            }
        }
        impl Conv<$crate::$name> for $w::$name {
            #[inline]
            fn conv(self) -> $crate::$name {
                $crate::$name { $($f: Conv::conv(self.$f)),* }
            }
        }
    )*};
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conv_enums {
    ($w:ident; $($name:ident { $($v:ident),* $(,)? })*) => {$(
        impl Conv<$w::$name> for $crate::$name {
            #[inline]
            fn conv(self) -> $w::$name {
                match self { $($crate::$name::$v => $w::$name::$v),* }
            }
        }
        impl Conv<$crate::$name> for $w::$name {
            #[inline]
            fn conv(self) -> $crate::$name {
                match self { $($w::$name::$v => $crate::$name::$v),* }
            }
        }
    )*};
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conv_variants {
    ($w:ident; $($name:ident { $($v:ident),* $(,)? })*) => {$(
        impl Conv<$w::$name> for $crate::$name {
            #[inline]
            fn conv(self) -> $w::$name {
                match self { $($crate::$name::$v(x) => $w::$name::$v(Conv::conv(x))),* }
            }
        }
        impl Conv<$crate::$name> for $w::$name {
            #[inline]
            fn conv(self) -> $crate::$name {
                match self { $($w::$name::$v(x) => $crate::$name::$v(Conv::conv(x))),* }
            }
        }
    )*};
}
