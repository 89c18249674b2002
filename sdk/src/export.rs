// The export macros, one per world (included from lib.rs).


#[doc(hidden)]
#[macro_export]
macro_rules! __wasi_http_with {
    ($world:literal, { $($extra:tt)* }, $($glue:tt)*) => {
        $crate::__export_world!($world, {
            $($extra)*
            "wasi:http/outgoing-handler@0.2.12": ::syncline_sdk::__private::bindings::wasi::http::outgoing_handler,
            "wasi:http/types@0.2.12": ::syncline_sdk::__private::bindings::wasi::http::types,
            "wasi:io/error@0.2.12": ::syncline_sdk::__private::bindings::wasi::io::error,
            "wasi:io/poll@0.2.12": ::syncline_sdk::__private::bindings::wasi::io::poll,
            "wasi:io/streams@0.2.12": ::syncline_sdk::__private::bindings::wasi::io::streams,
            "wasi:clocks/monotonic-clock@0.2.12": ::syncline_sdk::__private::bindings::wasi::clocks::monotonic_clock,
        }, $($glue)*);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __export_world {
    ($world:literal, { $($with:tt)* }, $($glue:tt)*) => {
        #[cfg(target_arch = "wasm32")]
        #[doc(hidden)]
        #[allow(missing_docs, unused)]
        mod __syncline_export {
            ::syncline_sdk::__private::generate_bindings!({
                world: $world,
                runtime_path: "::syncline_sdk::__private::wit_bindgen::rt",
                generate_all,
                with: {
                    "syncline:canonical/types@1.1.0": ::syncline_sdk::__private::bindings::syncline::canonical::types,
                    "syncline:plugin/log@1.1.0": ::syncline_sdk::__private::bindings::syncline::plugin::log,
                    "syncline:plugin/config@1.1.0": ::syncline_sdk::__private::bindings::syncline::plugin::config,
                    "syncline:plugin/reference@1.1.0": ::syncline_sdk::__private::bindings::syncline::plugin::reference,
                    "syncline:plugin/state@1.1.0": ::syncline_sdk::__private::bindings::syncline::plugin::state,
                    $($with)*
                },
            });
            use super::*;
            use ::syncline_sdk::__private::Conv as _;
            struct __Plugin;
            $($glue)*
            export!(__Plugin);
        }
    };
}

/// Exports a [`Transformer`](crate::Transformer) as the plugin's
/// `transformer` world.
///
/// ```ignore
/// struct Upper;
/// impl Transformer for Upper { /* ... */ }
/// export_transformer!(Upper);
/// ```
#[macro_export]
macro_rules! export_transformer {
    ($t:ty) => {
        $crate::__export_world!("syncline:plugin/transformer", { "syncline:plugin/plugin-types@1.1.0": ::syncline_sdk::__private::bindings::syncline::plugin::plugin_types, },
            impl exports::syncline::plugin::transform::Guest for __Plugin {
                fn transform(
                    msg: ::syncline_sdk::__private::wit::Message,
                ) -> Result<Vec<::syncline_sdk::__private::wit::Message>, ::syncline_sdk::__private::wit_plugin::PluginError> {
                    ::syncline_sdk::__private::run_transform::<$t>(msg)
                }
            }
        );
    };
}

/// Exports a [`Validator`](crate::Validator) as the plugin's `validator` world.
#[macro_export]
macro_rules! export_validator {
    ($t:ty) => {
        $crate::__export_world!("syncline:plugin/validator", { "syncline:plugin/plugin-types@1.1.0": ::syncline_sdk::__private::bindings::syncline::plugin::plugin_types, },
            impl exports::syncline::plugin::validate::Guest for __Plugin {
                fn validate(
                    msg: ::syncline_sdk::__private::wit::Message,
                ) -> Vec<::syncline_sdk::__private::wit_plugin::Violation> {
                    ::syncline_sdk::__private::run_validate::<$t>(msg)
                }
            }
        );
    };
}

/// Exports an [`Allocator`](crate::Allocator) as the plugin's `allocator` world.
#[macro_export]
macro_rules! export_allocator {
    ($t:ty) => {
        $crate::__export_world!("syncline:plugin/allocator", { "syncline:plugin/plugin-types@1.1.0": ::syncline_sdk::__private::bindings::syncline::plugin::plugin_types, },
            impl exports::syncline::plugin::allocate::Guest for __Plugin {
                fn allocate(
                    batch: Vec<::syncline_sdk::__private::wit::Message>,
                ) -> Result<Vec<::syncline_sdk::__private::wit::Message>, ::syncline_sdk::__private::wit_plugin::PluginError> {
                    ::syncline_sdk::__private::run_allocate::<$t>(batch)
                }
            }
        );
    };
}

/// Exports a [`Source`](crate::Source) as the plugin's `source` world.
#[macro_export]
macro_rules! export_source {
    ($t:ty) => {
        $crate::__wasi_http_with!("syncline:plugin/source", { "syncline:plugin/plugin-types@1.1.0": ::syncline_sdk::__private::bindings::syncline::plugin::plugin_types, },
            impl exports::syncline::plugin::poll::Guest for __Plugin {
                fn poll(
                    cursor: Option<String>,
                ) -> Result<exports::syncline::plugin::poll::Batch, ::syncline_sdk::__private::wit_plugin::PluginError> {
                    let b = ::syncline_sdk::__private::run_poll::<$t>(cursor)?;
                    Ok(exports::syncline::plugin::poll::Batch {
                        messages: b.messages.conv(),
                        cursor: b.cursor,
                        more: b.more,
                    })
                }
            }
        );
    };
}

/// Exports a [`Sink`](crate::Sink) as the plugin's `sink` world.
#[macro_export]
macro_rules! export_sink {
    ($t:ty) => {
        $crate::__wasi_http_with!("syncline:plugin/sink", {},
            impl exports::syncline::plugin::deliver::Guest for __Plugin {
                fn deliver(
                    messages: Vec<::syncline_sdk::__private::wit::Message>,
                ) -> Vec<exports::syncline::plugin::deliver::DeliveryOutcome> {
                    use exports::syncline::plugin::deliver as d;
                    ::syncline_sdk::__private::run_deliver::<$t>(messages)
                        .into_iter()
                        .map(|o| match o {
                            ::syncline_sdk::DeliveryOutcome::Delivered { reference } => d::DeliveryOutcome::Delivered(reference),
                            ::syncline_sdk::DeliveryOutcome::Retryable { reason, after_ms } => {
                                d::DeliveryOutcome::Retryable(d::Retry { reason, after_ms })
                            }
                            ::syncline_sdk::DeliveryOutcome::Permanent { reason } => d::DeliveryOutcome::Permanent(reason),
                        })
                        .collect()
                }
            }
        );
    };
}
