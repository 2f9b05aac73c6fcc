//! The library's root module, [`export_sampler!`](crate::export_sampler)
//! and the panic guard.

use std::panic::{catch_unwind, AssertUnwindSafe};

use abi_stable::library::RootModule;
use abi_stable::sabi_types::VersionStrings;
use abi_stable::std_types::RResult;
use abi_stable::{declare_root_module_statics, package_version_strings, StableAbi};

use crate::error::{SResult, SamplerError};
use crate::traits::SamplerBox;

/// The root module every plugin library exports (via [`export_sampler!`](crate::export_sampler)).
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = SamplerModRef)))]
#[sabi(missing_field(panic))]
pub struct SamplerMod {
    /// Constructs the sampler.
    #[sabi(last_prefix_field)]
    pub new: extern "C" fn() -> SResult<SamplerBox>,
}

impl RootModule for SamplerModRef {
    declare_root_module_statics! {SamplerModRef}
    const BASE_NAME: &'static str = "lh_sampler";
    const NAME: &'static str = "lh_sampler";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// The symbol abi_stable 0.11 looks up in a plugin library (checked against
/// `abi_stable::library::ROOT_MODULE_LOADER_NAME` by a test).
#[doc(hidden)]
pub const ROOT_MODULE_SYMBOL: &str = "_1as_0lib_1header_0root_bmodule_bloader";

/// Exports `$ty` (a [`Sampler`](crate::Sampler) + `Default`) as the
/// library's root module. Construction, `describe` and `run` all run under
/// [`guard`]: a panic in any of them is a fatal error naming the plugin, and
/// the draws recorded before it are kept. This is abi_stable's
/// `#[export_root_module]` written out, so that plugin crates need no direct
/// `abi_stable` dependency.
#[macro_export]
macro_rules! export_sampler {
    ($ty:ty) => {
        /// The plugin's root module (called by the host through the library header).
        pub fn get_root_module() -> $crate::SamplerModRef {
            use $crate::abi_stable::prefix_type::PrefixTypeTrait;
            extern "C" fn new_sampler() -> $crate::SResult<$crate::SamplerBox> {
                $crate::guard(|| {
                    let sampler = $crate::Guarded(<$ty as ::std::default::Default>::default());
                    Ok($crate::SamplerAbi_TO::from_value(sampler, $crate::abi_stable::sabi_trait::TD_Opaque))
                })
            }
            $crate::SamplerMod { new: new_sampler }.leak_into_prefix()
        }

        #[export_name = "_1as_0lib_1header_0root_bmodule_bloader"]
        #[doc(hidden)]
        pub static LH_SAMPLER_LIB_HEADER: $crate::abi_stable::library::LibHeader = {
            extern "C" fn erased_root_module() -> $crate::abi_stable::library::RootModuleResult {
                $crate::abi_stable::library::__call_root_module_loader(get_root_module)
            }
            // SAFETY: the constructor returns the root module type named here.
            unsafe {
                $crate::abi_stable::library::LibHeader::from_constructor::<$crate::SamplerModRef>(
                    erased_root_module,
                    $crate::abi_stable::library::CheckTypeLayout::Yes,
                )
            }
        };
    };
}

/// Runs `f`, turning a panic into a fatal [`SamplerError`] (a panic must
/// never unwind across the plugin boundary). `export_sampler!` wraps every
/// entry point in it; call it yourself only around code you run on threads
/// of your own. Inside `guard` the panic message and location go into the
/// error instead of being printed by the default panic hook.
pub fn guard<T>(f: impl FnOnce() -> Result<T, SamplerError>) -> SResult<T> {
    quiet_panics::install();
    quiet_panics::ACTIVE.with(|a| a.set(a.get() + 1));
    let r = catch_unwind(AssertUnwindSafe(f));
    quiet_panics::ACTIVE.with(|a| a.set(a.get() - 1));
    match r {
        Ok(r) => r.into(),
        Err(_) => {
            let msg = quiet_panics::LAST.with(|l| l.take()).unwrap_or_else(|| "unknown panic".into());
            RResult::RErr(SamplerError::fatal(format!("the plugin panicked: {msg}")))
        }
    }
}

/// A panic hook that, inside [`guard`], keeps the message for the error
/// instead of printing it; outside, it defers to the previous hook.
mod quiet_panics {
    use std::cell::{Cell, RefCell};
    use std::sync::Once;

    thread_local! {
        pub static ACTIVE: Cell<u32> = const { Cell::new(0) };
        pub static LAST: RefCell<Option<String>> = const { RefCell::new(None) };
    }

    pub fn install() {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                if ACTIVE.with(Cell::get) > 0 {
                    let payload = info.payload();
                    let msg = payload
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| payload.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown panic payload".into());
                    let at = info.location().map(|l| format!(" (at {}:{})", l.file(), l.line())).unwrap_or_default();
                    LAST.with(|l| *l.borrow_mut() = Some(format!("{msg}{at}")));
                } else {
                    previous(info);
                }
            }));
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_turns_a_panic_into_a_fatal_error() {
        let r: SResult<()> = guard(|| panic!("boom"));
        let e = r.unwrap_err();
        assert_eq!(e.kind(), Some(crate::ErrorKind::Fatal));
        assert!(e.message.contains("boom"));
        assert_eq!(guard(|| Ok(3)).unwrap(), 3);
    }

    #[test]
    fn export_macro_uses_abi_stables_symbol() {
        assert_eq!(ROOT_MODULE_SYMBOL, abi_stable::library::ROOT_MODULE_LOADER_NAME);
    }
}
