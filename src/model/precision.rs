//! Mixed precision on CUDA (`--precision fp32|bf16|fp16`): the forward pass runs under
//! libtorch's autocast (matrix products and attention in the 16-bit type, reductions and
//! losses in float32) while the weights and the optimizer's moments stay float32 (master
//! weights); fp16 training adds a dynamic loss scale (`train::scaler`). CPU runs stay float32:
//! captag refuses a 16-bit precision there (`Precision::check`).
//!
//! Why the FFI: `tch` switches autocast on and off but always with CUDA's default type (fp16),
//! so bf16 needs `at::autocast::set_autocast_dtype`, which libtorch exports but `tch` does not
//! bind. The four functions below are called by their C++ symbol names; they take and return
//! one-byte enums and a bool, which the x86-64 and AArch64 C ABIs pass exactly as C++ does.
use tch::{Device, Kind};

use crate::{Error, Result};

pub use crate::config::precision::Precision;

mod ffi {
    extern "C" {
        #[link_name = "_ZN2at8autocast18set_autocast_dtypeEN3c1010DeviceTypeENS1_10ScalarTypeE"]
        pub fn set_autocast_dtype(device: i8, kind: i8);
        #[link_name = "_ZN2at8autocast18get_autocast_dtypeEN3c1010DeviceTypeE"]
        pub fn get_autocast_dtype(device: i8) -> i8;
        #[link_name = "_ZN2at8autocast20set_autocast_enabledEN3c1010DeviceTypeEb"]
        pub fn set_autocast_enabled(device: i8, enabled: bool);
        #[link_name = "_ZN2at8autocast19is_autocast_enabledEN3c1010DeviceTypeE"]
        pub fn is_autocast_enabled(device: i8) -> bool;
    }
}

/// `c10::DeviceType` and `c10::ScalarType` codes.
const CPU: i8 = 0;
const CUDA: i8 = 1;
const HALF: i8 = 5;
const BFLOAT16: i8 = 15;

// Running in a precision is the model layer's business; the enum is a config value.
impl Precision {
    /// The 16-bit type autocast computes in (`None` for fp32).
    pub fn half_kind(self) -> Option<Kind> {
        match self {
            Precision::Fp32 => None,
            Precision::Bf16 => Some(Kind::BFloat16),
            Precision::Fp16 => Some(Kind::Half),
        }
    }

    /// A 16-bit precision needs a CUDA device: on CPU it is refused in one line.
    pub fn check(self, device: Device) -> Result<()> {
        if self != Precision::Fp32 && !device.is_cuda() {
            return Err(Error::invalid(format!(
                "--precision {} needs a CUDA device (this run is on the CPU, which trains and \
                 decodes in fp32)",
                self.as_str()
            )));
        }
        Ok(())
    }

    /// Runs `f` with autocast on `device` in this precision (fp32: `f` as it is). Nesting and
    /// the previous state are restored afterwards, as `torch.autocast` does.
    pub fn autocast<T>(self, device: Device, f: impl FnOnce() -> T) -> T {
        match self.half_kind() {
            None => f(),
            Some(kind) => {
                let _guard = Autocast::enter(if device.is_cuda() { CUDA } else { CPU }, kind);
                f()
            }
        }
    }
}

/// Autocast switched on for one device type until dropped.
struct Autocast {
    device: i8,
    was_enabled: bool,
    was_kind: i8,
}

impl Autocast {
    fn enter(device: i8, kind: Kind) -> Autocast {
        let code = if kind == Kind::BFloat16 {
            BFLOAT16
        } else {
            HALF
        };
        // SAFETY: plain setters/getters of libtorch's autocast state for a valid device type.
        let guard = unsafe {
            let g = Autocast {
                device,
                was_enabled: ffi::is_autocast_enabled(device),
                was_kind: ffi::get_autocast_dtype(device),
            };
            ffi::set_autocast_dtype(device, code);
            ffi::set_autocast_enabled(device, true);
            g
        };
        // SAFETY: libtorch's nesting counter (torch-sys's C API).
        unsafe {
            torch_sys::at_autocast_increment_nesting();
        }
        guard
    }
}

impl Drop for Autocast {
    fn drop(&mut self) {
        // SAFETY: as in `enter`; the weight cache is cleared when the outermost region ends.
        unsafe {
            if torch_sys::at_autocast_decrement_nesting() == 0 {
                torch_sys::at_autocast_clear_cache();
            }
            ffi::set_autocast_enabled(self.device, self.was_enabled);
            ffi::set_autocast_dtype(self.device, self.was_kind);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Tensor;

    /// The FFI really switches libtorch's autocast and its type (CPU autocast has the same
    /// switches as CUDA's), and restores both afterwards.
    #[test]
    fn autocast_computes_matrix_products_in_the_chosen_type_and_restores_fp32() {
        let a = Tensor::randn([4, 8], (Kind::Float, Device::Cpu));
        let b = Tensor::randn([8, 3], (Kind::Float, Device::Cpu));
        for (p, kind) in [
            (Precision::Bf16, Kind::BFloat16),
            (Precision::Fp16, Kind::Half),
        ] {
            let (y, s) = p.autocast(Device::Cpu, || {
                let y = a.matmul(&b);
                (y.shallow_clone(), y.to_kind(Kind::Float).sum(Kind::Float))
            });
            assert_eq!(y.kind(), kind, "{p:?}");
            assert_eq!(s.kind(), Kind::Float);
            let full = a.matmul(&b);
            assert!(
                (y.to_kind(Kind::Float) - &full)
                    .abs()
                    .max()
                    .double_value(&[])
                    < 0.1
            );
        }
        assert_eq!(
            Precision::Fp32
                .autocast(Device::Cpu, || a.matmul(&b))
                .kind(),
            Kind::Float
        );
        assert_eq!(a.matmul(&b).kind(), Kind::Float, "autocast left on");
    }

    #[test]
    fn sixteen_bit_precision_is_refused_on_the_cpu() {
        assert!(Precision::Fp32.check(Device::Cpu).is_ok());
        let e = Precision::Bf16.check(Device::Cpu).unwrap_err().to_string();
        assert!(e.contains("--precision bf16 needs a CUDA device"), "{e}");
        assert!(Precision::Fp16.check(Device::Cuda(0)).is_ok());
    }
}
