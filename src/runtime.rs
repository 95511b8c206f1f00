//! Process-wide settings that decide how fast candle runs on a CPU: the allocator and the
//! thread pools. Measured on SmolLM2-135M, batch 8 x 64, 2 cores (docs/benchmarks.md).
//! Depends on nothing in the engine.

/// candle allocates a fresh buffer for every intermediate tensor. With the system allocator the
/// large ones went back to the OS on free and came back as page faults: about 15% of a training
/// step was the kernel zeroing pages. mimalloc keeps freed memory for reuse. Declared in the
/// library so every binary (the app, the tests) gets it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `purge_delay` option (its index in mimalloc 3's `mi_option_t`).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long freed memory stays in the process before mimalloc returns it to the OS (-1: never).
const PURGE_DELAY_MS: std::os::raw::c_long = -1;

/// The device models are loaded onto: the CPU unless `--device` (or the workbench's device
/// choice) says otherwise. One per process: a model, its prompts and their optimiser live on one
/// device, and a process trains one run at a time.
static DEVICE: std::sync::Mutex<Option<candle_core::Device>> = std::sync::Mutex::new(None);

/// The device `--device` names: `cpu`, `cuda` (= `cuda:0`), `cuda:N` or `metal`. A GPU this
/// build was not compiled for is an error that says how to build it.
pub fn parse_device(spec: &str) -> anyhow::Result<candle_core::Device> {
    use candle_core::utils::{cuda_is_available, metal_is_available};
    let spec = spec.trim().to_ascii_lowercase();
    let cuda = match spec.as_str() {
        "cpu" => return Ok(candle_core::Device::Cpu),
        "metal" => {
            if !metal_is_available() {
                anyhow::bail!("--device metal: this gradprompt was built without Metal; build it on macOS with `cargo build --release --features metal`");
            }
            return Ok(candle_core::Device::new_metal(0)?);
        }
        "cuda" => Some(0),
        s => s
            .strip_prefix("cuda:")
            .map(|n| n.parse::<usize>())
            .transpose()
            .ok()
            .flatten(),
    };
    let Some(ordinal) = cuda else {
        anyhow::bail!("--device {spec}: expected cpu, cuda, cuda:N (N a GPU number) or metal");
    };
    if !cuda_is_available() {
        anyhow::bail!("--device {spec}: this gradprompt was built without CUDA; build it with `cargo build --release --features cuda` (needs the CUDA toolkit)");
    }
    Ok(candle_core::Device::new_cuda(ordinal)?)
}

/// Loads the models of this process onto `device` from now on.
pub fn set_device(device: candle_core::Device) {
    *DEVICE.lock().unwrap() = Some(device);
}

/// The device models are loaded onto (the CPU unless [`set_device`] chose another).
pub fn device() -> candle_core::Device {
    DEVICE
        .lock()
        .unwrap()
        .clone()
        .unwrap_or(candle_core::Device::Cpu)
}

/// The environment variable that sizes candle's own elementwise thread pool.
pub const CANDLE_THREADS_VAR: &str = "CANDLE_NUM_THREADS";

/// Keeps freed memory in the process. mimalloc returns memory unused for a second to the OS by
/// default; a training step allocates and frees the same gigabytes every second or two, so each
/// step paid the page faults again (a profile showed ~20% of samples in the kernel's
/// `clear_page_erms`; the prompt-tuning step measured 1.94 s with the default delay and 1.71 s
/// without purging, docs/benchmarks.md). A ten-second delay measured 1.86 s with a wide spread, so
/// freed memory is never returned: the process keeps its peak (what PyTorch's caching allocator
/// does on a GPU). Idempotent; call it before the model is loaded. A `MIMALLOC_PURGE_DELAY` in
/// the environment wins (to measure the difference).
pub fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: setting an integer option is thread-safe in mimalloc.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
}

/// Runs candle's elementwise ops on the calling thread, leaving the cores to gemm's and our
/// kernels' rayon pool. candle 0.11 splits large elementwise ops over a second pool whose
/// workers spin for a while after each op; next to rayon's workers that is more threads than
/// cores, and a third of a step's samples were threads spinning at candle's barrier. With one
/// thread there is no second pool (measured: prompt-tuning step 4.8 s -> 2.7 s with the
/// allocator change, under load). Must run before any candle op and before other threads exist,
/// so the binary calls it first thing in `main`; `cargo test` and `cargo run` get the same value
/// from `.cargo/config.toml`. A value the user set is kept.
pub fn single_threaded_elementwise_ops() {
    if std::env::var_os(CANDLE_THREADS_VAR).is_none() {
        // SAFETY (edition 2024 wording): no other thread exists yet when `main` calls this.
        std::env::set_var(CANDLE_THREADS_VAR, "1");
    }
}
