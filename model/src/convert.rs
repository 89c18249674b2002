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
        $crate::__conv_common!($w);

        $crate::__conv_records!($w;
            Item { id, description, base_uom, pack_size, product_family, lifecycle, gtin, extensions }
            InventoryPosition { item, location, on_hand, allocated, in_transit, available, uom, as_of,
                                safety_stock, extensions }
            Message { id, correlation_id, causation_id, tenant, source_system, schema_version,
                      occurred_at, priority, idempotency_key, headers, body }
        );
    };
}

/// [`wit_conversions!`] for bindings generated from the frozen 1.0 WIT
/// (`wit/1.0/`): what a plugin built against `syncline:canonical@1.0.0`
/// sees and returns. Fields 1.0 lacks are shown to it as extensions and
/// lifted back from what it returns ([`crate::versions`]), and its input
/// is labelled 1.0.0 (the host labels what a plugin returns itself).
#[macro_export]
macro_rules! wit_conversions_1_0 {
    ($w:ident) => {
        $crate::__conv_common!($w);

        impl Conv<$w::Item> for $crate::Item {
            fn conv(mut self) -> $w::Item {
                $crate::versions::Evolve::lower(&mut self, 0);
                let $crate::Item { id, description, base_uom, pack_size, product_family, lifecycle, gtin: _, extensions } = self;
                $w::Item { id, description, base_uom, pack_size, product_family, lifecycle: lifecycle.conv(), extensions: extensions.conv() }
            }
        }
        impl Conv<$crate::Item> for $w::Item {
            fn conv(self) -> $crate::Item {
                let $w::Item { id, description, base_uom, pack_size, product_family, lifecycle, extensions } = self;
                let mut item = $crate::Item { id, description, base_uom, pack_size, product_family, lifecycle: lifecycle.conv(), gtin: None, extensions: extensions.conv() };
                $crate::versions::Evolve::lift(&mut item, 0);
                item
            }
        }
        impl Conv<$w::InventoryPosition> for $crate::InventoryPosition {
            fn conv(mut self) -> $w::InventoryPosition {
                $crate::versions::Evolve::lower(&mut self, 0);
                let $crate::InventoryPosition { item, location, on_hand, allocated, in_transit, available, uom, as_of, safety_stock: _, extensions } = self;
                $w::InventoryPosition { item, location, on_hand, allocated, in_transit, available, uom, as_of, extensions: extensions.conv() }
            }
        }
        impl Conv<$crate::InventoryPosition> for $w::InventoryPosition {
            fn conv(self) -> $crate::InventoryPosition {
                let $w::InventoryPosition { item, location, on_hand, allocated, in_transit, available, uom, as_of, extensions } = self;
                let mut p = $crate::InventoryPosition { item, location, on_hand, allocated, in_transit, available, uom, as_of, safety_stock: None, extensions: extensions.conv() };
                $crate::versions::Evolve::lift(&mut p, 0);
                p
            }
        }
        impl Conv<$w::Message> for $crate::Message {
            fn conv(mut self) -> $w::Message {
                if $crate::versions::minor_of(&self.schema_version).is_some_and(|minor| minor > 0) {
                    self.schema_version = "1.0.0".to_string();
                }
                $crate::__conv_into!($w; self; Message { id, correlation_id, causation_id, tenant, source_system, schema_version,
                                                         occurred_at, priority, idempotency_key, headers, body })
            }
        }
        $crate::__conv_from!($w; Message { id, correlation_id, causation_id, tenant, source_system, schema_version,
                                           occurred_at, priority, idempotency_key, headers, body });
    };
}

/// What every version's conversions share: the trait, identities,
/// containers, and the records, enums and variants no minor changed.
#[doc(hidden)]
#[macro_export]
macro_rules! __conv_common {
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
            Location { id, kind, region, business_unit, extensions }
            Supplier { id, name, lead_time_days, extensions }
            UomConversion { item, from_uom, to_uom, factor, extensions }
            TimeBucket { start, granularity }
            Forecast { item, location, bucket, quantity, uom, forecast_version, scenario, channel,
                       source_engine, extensions }
            ReplenishmentRecommendation { id, item, location, quantity, uom, need_by, source, reason,
                                          priority, extensions }
            PurchaseRequisition { id, item, location, supplier, quantity, uom, need_by, order_by,
                                  recommendation, rule, extensions }
            TransferProposal { id, item, from_location, to_location, quantity, uom, need_by, ship_by,
                               recommendation, rule, extensions }
            ExecutionStatus { order_ref, kind, status, quantity, uom, expected_date, recommendation,
                              extensions }
            EntityRef { kind, id }
            Exception { code, severity, domain, entities, text, queue, extensions }
            Raw { content_type, data }
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
                $crate::__conv_into!($w; self; $name { $($f),* })
            }
        }
        $crate::__conv_from!($w; $name { $($f),* });
    )*};
}

/// The generated record built from this crate's `$v`, field by field.
#[doc(hidden)]
#[macro_export]
macro_rules! __conv_into {
    ($w:ident; $v:ident; $name:ident { $($f:ident),* $(,)? }) => {
        $w::$name { $($f: Conv::conv($v.$f)),* }
    };
}

/// The move from a generated record to this crate's, field by field.
#[doc(hidden)]
#[macro_export]
macro_rules! __conv_from {
    ($w:ident; $name:ident { $($f:ident),* $(,)? }) => {
        impl Conv<$crate::$name> for $w::$name {
            #[inline]
            fn conv(self) -> $crate::$name {
                $crate::$name { $($f: Conv::conv(self.$f)),* }
            }
        }
    };
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
