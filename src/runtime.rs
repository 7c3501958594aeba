//! Facts about the compute runtime: libtorch's version and location, CUDA loading, devices and threads.
//!
//! tch links `torch_cuda` "as needed" and the linker drops it, so on a GPU host CUDA would be silently missing;
//! [`load_cuda`] opens `libtorch_cuda.so` (RTLD_GLOBAL) before the first device query, which registers CUDA.
//! It is only called when a device is chosen, so commands that never touch a model start fast.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// libtorch's version as found at build time (the PyTorch wheel's `torch/version.py`).
pub const LIBTORCH_VERSION: &str = env!("HUDD_LIBTORCH_VERSION");
/// The folder holding `libtorch_cpu.so`, embedded as the binary's rpath.
pub const TORCH_LIB_DIR: &str = env!("HUDD_TORCH_LIB");

/// Cores available to this process.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Outcome of trying to load libtorch's CUDA backend.
#[derive(Debug, Clone)]
pub enum CudaLibrary {
    Loaded(PathBuf),
    /// The libtorch build has no CUDA library (a CPU-only libtorch).
    Absent,
    Failed(String),
}

/// Loads `libtorch_cuda.so` once per process so tch sees CUDA devices.
pub fn load_cuda() -> &'static CudaLibrary {
    static CUDA: OnceLock<CudaLibrary> = OnceLock::new();
    CUDA.get_or_init(|| {
        let path = Path::new(TORCH_LIB_DIR).join("libtorch_cuda.so");
        if !path.exists() {
            return CudaLibrary::Absent;
        }
        // SAFETY: loading libtorch's own CUDA library runs its static initialisers, which register the CUDA
        // backend with libtorch_cpu; it is never unloaded (the handle is leaked on purpose).
        let opened = unsafe {
            libloading::os::unix::Library::open(
                Some(&path),
                libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_GLOBAL,
            )
        };
        match opened {
            Ok(lib) => {
                std::mem::forget(lib);
                CudaLibrary::Loaded(path)
            }
            Err(e) => CudaLibrary::Failed(e.to_string()),
        }
    })
}

/// The device a model-running stage asks for in its manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// CUDA when a GPU is visible, else the CPU.
    #[default]
    Auto,
    Cpu,
    Cuda,
}

/// A device the manifest asks for that this host does not have.
#[derive(Debug, thiserror::Error)]
#[error("device = \"cuda\" but no CUDA device is visible ({found})")]
pub struct NoCuda {
    /// What was found of CUDA's library, in words.
    pub found: String,
}

/// Resolves a device choice; asking for CUDA on a host without it is an error, not a silent CPU run.
pub fn device(choice: DeviceChoice) -> Result<tch::Device, NoCuda> {
    match choice {
        DeviceChoice::Cpu => Ok(tch::Device::Cpu),
        DeviceChoice::Auto => {
            load_cuda();
            Ok(tch::Device::cuda_if_available())
        }
        DeviceChoice::Cuda => {
            load_cuda();
            if tch::Cuda::is_available() {
                Ok(tch::Device::Cuda(0))
            } else {
                Err(NoCuda { found: describe_cuda(load_cuda()) })
            }
        }
    }
}

/// What a device choice resolves to here, as it enters the keys of the stages that run a model (`("device",
/// "cpu")` or `("device", "cuda")`): the same stage computes other bytes on a GPU, so a key names the device kind.
/// `auto` probes for CUDA (loading its library once per process); `cuda` is keyed as asked, and refused when run
/// where there is none.
pub fn device_fingerprint(choice: DeviceChoice) -> (String, String) {
    let kind = match choice {
        DeviceChoice::Cpu => cpu_kind(),
        DeviceChoice::Cuda => "cuda".to_string(),
        DeviceChoice::Auto => {
            load_cuda();
            if tch::Cuda::is_available() { "cuda".to_string() } else { cpu_kind() }
        }
    };
    ("device".to_string(), kind)
}

/// The CPU kind the quickstart's committed report (`reports/quickstart/`, the README's Quick start figures) was
/// computed under; docs/status.md says which other committed tables predate it.
pub const COMMITTED_KIND: &str = X86_64_KIND;

/// What keys name an x86-64 CPU held to [`CPU_KERNELS`] (see [`cpu_kind`]).
pub const X86_64_KIND: &str = "cpu (x86-64, kernels 2)";

/// The CPU vendors whose machines have computed the committed figures under [`COMMITTED_KIND`] from an empty store
/// (`scripts/vendor-check`; docs/status.md records each check). The kind is the same on every x86-64 CPU, but
/// only a run on each vendor's CPU shows that its bytes are.
pub const CHECKED_VENDORS: &[&str] = &["GenuineIntel"];

/// The CPU as keys name it: [`X86_64_KIND`] on every x86-64 CPU, Intel's and other vendors' alike, while libtorch's
/// kernels are held to [`CPU_KERNELS`]; else `cpu (x86-64, kernels 2, …)` with what makes other bytes (a kernel
/// variable set otherwise), or `cpu (aarch64)` on another architecture. Until 2026-12-07 MKL was held to
/// `AVX2,STRICT`, a branch only Intel CPUs take (others take MKL's AUTO branch, `MKL_VERBOSE=1` printing
/// `CNR:AUTO,STRICT` on an AMD EPYC), so an Intel CPU summed otherwise and keyed `cpu (Intel: MKL's Intel branch)`.
/// MKL's `COMPATIBLE` branch computes products alike on every vendor's CPU, and from 2026-12-07 keys named
/// `cpu (x86-64)`; but Adam's square roots still went to MKL's vector maths, whose bytes differ by vendor even on
/// that branch ([`crate::model::ops`]), and an Intel Xeon trained another quickstart model than the AMD EPYC had.
/// Since 2026-12-08 every square root hudd takes of a tensor avoids it, and keys name the second generation of
/// the held kernels, `cpu (x86-64, kernels 2)`: the old name's entries hold the other bytes.
pub fn cpu_kind() -> String {
    static KIND: OnceLock<String> = OnceLock::new();
    KIND.get_or_init(|| cpu_kind_for(std::env::consts::ARCH, |n| std::env::var(n).ok())).clone()
}

fn cpu_kind_for(arch: &str, var: impl Fn(&str) -> Option<String>) -> String {
    if arch != "x86_64" {
        return format!("cpu ({arch})");
    }
    let other: Vec<String> = (CPU_KERNELS.iter())
        .filter_map(|(name, value)| match var(name) {
            Some(v) if v == *value => None,
            v => Some(format!("{name}={}", v.as_deref().unwrap_or("(unset)"))),
        })
        .collect();
    if other.is_empty() {
        X86_64_KIND.to_string()
    } else {
        format!("{}, {})", X86_64_KIND.trim_end_matches(')'), other.join(", "))
    }
}

/// The CPU's vendor string (`GenuineIntel`, `AuthenticAMD`, …) on x86-64.
fn cpu_vendor() -> Option<String> {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: CPUID leaf 0 exists on every x86-64 CPU.
        #[allow(unused_unsafe)]
        let r = unsafe { std::arch::x86_64::__cpuid(0) };
        let bytes: Vec<u8> = [r.ebx, r.edx, r.ecx].iter().flat_map(|w| w.to_le_bytes()).collect();
        Some(String::from_utf8_lossy(&bytes).into_owned())
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

fn describe_cuda(lib: &CudaLibrary) -> String {
    match lib {
        CudaLibrary::Loaded(p) => format!("{} loaded", p.display()),
        CudaLibrary::Absent => "this libtorch has no CUDA library".into(),
        CudaLibrary::Failed(e) => format!("libtorch_cuda.so failed to load: {e}"),
    }
}

/// "cuda (2 devices)" or "cpu": what `device = "auto"` resolves to here.
pub fn device_summary() -> String {
    load_cuda();
    if tch::Cuda::is_available() {
        format!("cuda ({} device{})", tch::Cuda::device_count(), if tch::Cuda::device_count() == 1 { "" } else { "s" })
    } else {
        "cpu".into()
    }
}

/// This machine's host name (Linux), for provenance.
pub fn host() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    Some(name.trim().to_string()).filter(|n| !n.is_empty())
}

/// The instruction set libtorch's CPU kernels are held to, and the variables that hold them there: ATen's vectorised
/// kernels and oneDNN's convolutions each pick the widest instructions the CPU has, and an AVX-512 machine then sums
/// in another order than an AVX2 one: the same key trained another model (the quickstart's original accuracy 75.0%
/// on one machine, 82.9% on another). Held to AVX2, which every x86-64 server CPU since 2013 has, the machines give
/// the same bytes. MKL, which libtorch's matrix products and eigendecompositions call, is held to its `COMPATIBLE`
/// branch (SSE2 without approximate reciprocals), the one branch oneMKL computes alike on Intel's and other vendors'
/// CPUs (its AVX2 branch is Intel's only: elsewhere MKL takes its AUTO branch), in strict mode: left alone on an
/// AVX-512 machine MKL split a product's sums by the thread count, so LRP's heatmaps changed with `--threads`, which
/// stays out of keys (`tests/it/determinism.rs`); `STRICT` gives the same bytes at any thread count. It costs
/// little (`cargo bench --bench kernels`: training 0.97×, LRP 1.04× the speed under `AVX2,STRICT` on an AMD EPYC,
/// 0.97× and 0.98× on an Intel Xeon).
/// A variable the user set is kept: the user then answers for other machines' bytes.
pub const CPU_KERNELS: [(&str, &str); 3] =
    [("ATEN_CPU_CAPABILITY", "avx2"), ("ONEDNN_MAX_CPU_ISA", "AVX2"), ("MKL_CBWR", "COMPATIBLE,STRICT")];

/// Holds libtorch's CPU kernels to [`CPU_KERNELS`] (each variable the environment does not set already). Call it
/// before libtorch runs anything and while no other thread runs: it writes the process environment.
pub fn pin_cpu_kernels() {
    for (name, value) in CPU_KERNELS {
        if std::env::var_os(name).is_none() {
            // SAFETY: the caller runs before any other thread and before libtorch reads its environment.
            unsafe { std::env::set_var(name, value) };
        }
    }
}

/// Sets libtorch's intra-op thread count for the calling thread (OpenMP's and MKL's counts are per thread, so
/// stages side by side each keep their own), and MKL's back to one: libtorch hands MKL its own count, and MKL splits
/// a product's sums by it where its strict reproducible mode does not hold (on every CPU not made by Intel, whose
/// MKL takes the AUTO branch): on the AMD EPYC here a linear layer of 8 images by 512 inputs summed otherwise with
/// 2 threads than with 1, so `test` and `heatmaps` wrote other bytes under the same key (`tests/it/settings.rs`,
/// 2026-12-02). ATen's own kernels and oneDNN's convolutions keep the threads.
pub fn set_threads(n: usize) {
    // libtorch sets a thread's counts from its process-wide count the first time the thread asks for them (and at its
    // first parallel kernel): ask first, so that this thread's counts are the ones set here, not a later default.
    let _ = tch::get_num_threads();
    tch::set_num_threads(n.max(1) as i32);
    mkl_single_thread();
}

/// Runs `f` with `n` libtorch threads on the calling thread, then restores the count it had.
pub fn with_threads<T>(n: usize, f: impl FnOnce() -> T) -> T {
    let before = tch::get_num_threads();
    set_threads(n);
    let out = f();
    set_threads(before.max(1) as usize);
    out
}

/// MKL's thread count for the calling thread set to one, through MKL's own `MKL_Set_Num_Threads_Local` (in
/// libtorch's CPU library; a libtorch without MKL has none, and nothing to hold). Returns whether MKL was found.
fn mkl_single_thread() -> bool {
    type SetLocal = unsafe extern "C" fn(std::ffi::c_int) -> std::ffi::c_int;
    static SET_LOCAL: OnceLock<Option<SetLocal>> = OnceLock::new();
    let set = SET_LOCAL.get_or_init(|| {
        // SAFETY: the process's own symbol table (libtorch is linked in); the symbol, where present, is MKL's C
        // interface `int MKL_Set_Num_Threads_Local(int)`, and the handle lives as long as the process.
        let this = libloading::os::unix::Library::this();
        let symbol = unsafe { this.get::<SetLocal>(b"MKL_Set_Num_Threads_Local\0") }.ok().map(|s| *s);
        std::mem::forget(this);
        symbol
    });
    if let Some(set) = set {
        // SAFETY: MKL's documented C interface; it only sets a thread-local count.
        unsafe { set(1) };
    }
    set.is_some()
}

/// Whether a machine of this CPU kind and vendor computes the committed figures, for `hudd doctor`.
fn committed_figures(kind: &str, vendor: Option<&str>) -> String {
    if kind != COMMITTED_KIND {
        return format!("computed under `{COMMITTED_KIND}`; this machine computes other keys, so other figures");
    }
    let checked = CHECKED_VENDORS.join(", ");
    match vendor {
        Some(v) if CHECKED_VENDORS.contains(&v) => format!(
            "computed under `{COMMITTED_KIND}`, as here, and rerun from an empty store on {checked} CPUs: \
             a run from an empty store gives its figures"
        ),
        _ => format!(
            "computed under `{COMMITTED_KIND}`, as here, but checked from an empty store on {checked} CPUs only: \
             a run should give its figures; `scripts/vendor-check fashion` checks it (docs/status.md)"
        ),
    }
}

/// Lines for `hudd doctor`.
pub fn doctor(store_root: &Path) -> Vec<(String, String)> {
    let cuda = load_cuda();
    let available = tch::Cuda::is_available();
    let venv = Path::new(TORCH_LIB_DIR)
        .ancestors()
        .find(|p| p.join("pyvenv.cfg").exists())
        .map_or_else(|| "(not a venv)".to_string(), |p| p.display().to_string());
    vec![
        ("hudd".into(), env!("CARGO_PKG_VERSION").into()),
        ("libtorch".into(), LIBTORCH_VERSION.into()),
        (
            "CPU kernels".into(),
            CPU_KERNELS
                .iter()
                .map(|(name, _)| format!("{name}={}", std::env::var(name).unwrap_or_else(|_| "(unset)".into())))
                .collect::<Vec<_>>()
                .join(" "),
        ),
        ("CPU in keys".into(), format!("{} (vendor {})", cpu_kind(), cpu_vendor().unwrap_or_else(|| "unknown".into()))),
        ("committed quickstart".into(), committed_figures(&cpu_kind(), cpu_vendor().as_deref())),
        ("libtorch folder".into(), TORCH_LIB_DIR.into()),
        ("libtorch venv (cache)".into(), venv),
        ("CUDA library".into(), describe_cuda(cuda)),
        (
            "CUDA available".into(),
            if available { format!("yes, {} device(s)", tch::Cuda::device_count()) } else { "no".into() },
        ),
        ("cuDNN available".into(), if tch::Cuda::cudnn_is_available() { "yes".into() } else { "no".into() }),
        ("device (auto)".into(), device_summary()),
        ("cores".into(), cores().to_string()),
        ("libtorch threads".into(), tch::get_num_threads().to_string()),
        (
            "hudd run uses".into(),
            format!(
                "{} stages at once (-j); an inference or clustering stage takes the cores the others leave \
                 (--threads); a training stage its `threads` parameter (default 1, part of its key)",
                cores()
            ),
        ),
        ("store".into(), store_root.display().to_string()),
        ("stat cache".into(), store_root.join("statcache.json").display().to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(name: &str) -> Option<String> {
        CPU_KERNELS.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string())
    }

    #[test]
    fn every_x86_64_cpu_held_to_the_kernels_has_one_kind_in_keys_whoever_made_it() {
        assert_eq!(cpu_kind_for("x86_64", held), "cpu (x86-64, kernels 2)");
    }

    #[test]
    fn a_kernel_variable_set_otherwise_or_another_architecture_gets_keys_of_its_own() {
        let avx2 = |n: &str| if n == "MKL_CBWR" { Some("AVX2,STRICT".to_string()) } else { held(n) };
        assert_eq!(cpu_kind_for("x86_64", avx2), "cpu (x86-64, kernels 2, MKL_CBWR=AVX2,STRICT)");
        let unset = |n: &str| if n == "ATEN_CPU_CAPABILITY" { None } else { held(n) };
        assert_eq!(cpu_kind_for("x86_64", unset), "cpu (x86-64, kernels 2, ATEN_CPU_CAPABILITY=(unset))");
        assert_eq!(cpu_kind_for("aarch64", held), "cpu (aarch64)");
    }

    #[test]
    fn mkl_sums_a_product_the_same_at_any_libtorch_thread_count() {
        // The shape that summed otherwise with 2 threads than with 1 on an AMD EPYC (8 images by 512 inputs).
        assert!(mkl_single_thread(), "libtorch's MKL not found");
        let x = tch::Tensor::randn([8, 512], (tch::Kind::Float, tch::Device::Cpu));
        let w = tch::Tensor::randn([15, 512], (tch::Kind::Float, tch::Device::Cpu));
        let one = with_threads(1, || x.linear(&w, None::<tch::Tensor>));
        let two = with_threads(2, || x.linear(&w, None::<tch::Tensor>));
        assert!(one.equal(&two));
    }

    #[test]
    fn doctor_says_whether_the_committed_figures_were_checked_on_this_vendor() {
        let on = |vendor| committed_figures(COMMITTED_KIND, vendor);
        for &v in CHECKED_VENDORS {
            assert!(on(Some(v)).contains("a run from an empty store gives its figures"), "{}", on(Some(v)));
        }
        // A vendor no run has checked yet (Hygon's string), and none read (not x86-64).
        for v in [Some("HygonGenuine"), None] {
            let said = on(v);
            assert!(said.contains("scripts/vendor-check") && said.contains(CHECKED_VENDORS[0]), "{said}");
        }
        let other = committed_figures("cpu (x86-64, MKL_CBWR=AVX2)", Some(CHECKED_VENDORS[0]));
        assert!(other.contains("other keys"), "{other}");
    }

    #[test]
    fn the_vendor_string_is_read_from_cpuid() {
        // CPUID exists only on x86-64: elsewhere there is no vendor string, and the CPU kind names the architecture.
        let vendor = cpu_vendor();
        if cfg!(target_arch = "x86_64") {
            let vendor = vendor.unwrap();
            assert_eq!(vendor.len(), 12, "{vendor}");
            assert!(vendor.is_ascii(), "{vendor}");
            let known = ["GenuineIntel", "AuthenticAMD", "HygonGenuine", "CentaurHauls", "  Shanghai  "];
            assert!(known.contains(&vendor.as_str()), "{vendor}");
        } else {
            assert_eq!(vendor, None);
        }
    }
}
