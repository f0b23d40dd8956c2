"""Device, backend, seeds, threads, the environment line, and run folders with metrics.json."""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import json
import os
import platform
import random
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

VERSIONED = ("torch", "transformers", "peft", "trl", "bitsandbytes", "unsloth", "vllm")
# The processor flags that change float results and speed: which kernels oneDNN/MKL pick, and
# whether bf16 is fast.
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
# a CPU with either runs bf16 matmuls fast; without both, bf16 is far slower
BF16_FLAGS = ("amx_bf16", "avx512_bf16")
DTYPES = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class Runtime:
    """Where the course runs: device, training backend, and why that backend."""

    device: str
    backend: str
    reason: str
    threads: int
    dtype: str = "fp32"
    dtype_reason: str = ""

    @property
    def label(self) -> str:
        """Short form for plots and tables, e.g. 'CPU · PEFT+TRL'."""
        return f"{self.device.upper()} · {self.backend}"


def pick_device() -> str:
    """The device cascade: cuda, then mps, then cpu."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def unsloth_importable() -> tuple[bool, str]:
    """Whether Unsloth can be imported here, with the reason when it cannot."""
    if importlib.util.find_spec("unsloth") is None:
        return False, "Unsloth is not installed (pip install -e '.[gpu]')"
    try:
        import unsloth  # noqa: F401
    except Exception as exc:  # Unsloth raises plain Exceptions on unsupported hardware
        return False, f"Unsloth failed to import: {str(exc).splitlines()[0][:120]}"
    return True, "Unsloth imported"


def pick_backend(device: str) -> tuple[str, str]:
    """Unsloth only with CUDA and a working import; PEFT+TRL otherwise, with the reason."""
    if device != "cuda":
        return "PEFT+TRL", "Unsloth needs CUDA; using the portable path"
    ok, why = unsloth_importable()
    return ("Unsloth", why) if ok else ("PEFT+TRL", why)


def set_threads(n: int | None = None) -> int:
    """Set torch's CPU threads deliberately (default: min(2, cores), or $WORKBOOK_THREADS), and
    the fast tokenizers' pool off unless $TOKENIZERS_PARALLELISM says otherwise."""
    import torch

    n = n or int(os.environ.get("WORKBOOK_THREADS", "0")) or min(2, os.cpu_count() or 1)
    torch.set_num_threads(n)
    # left on, the tokenizers' Rust pool slowed the training steps that follow in the same
    # kernel: notebook 05's reply SFT took 3.6 s a step without this and 2.5 s with it (LEDGER,
    # "The tokenizers' thread pool")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return n


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def compute_dtype(
    device: str, choice: str | None = None, flags: dict[str, bool] | None = None
) -> tuple[str, str]:
    """('bf16' or 'fp32', why) for training and generation: bf16 autocast where the hardware has
    bf16 units.

    `choice` defaults to $WORKBOOK_DTYPE (auto, fp32 or bf16). bf16 asked for on a CPU without bf16
    units falls back to fp32, and the reason names the missing flags.
    """
    choice = (
        choice if choice is not None else os.environ.get("WORKBOOK_DTYPE", "auto")
    ).strip().lower() or "auto"
    if choice not in DTYPES:
        raise ValueError(f"WORKBOOK_DTYPE={choice!r}: use one of {', '.join(DTYPES)}")
    if choice == "fp32":
        return "fp32", "fp32: WORKBOOK_DTYPE=fp32"
    if device == "cuda":
        import torch

        ok = torch.cuda.is_bf16_supported()
        return (
            ("bf16", "bf16: this GPU supports it")
            if ok
            else ("fp32", "fp32: this GPU has no bf16 support")
        )
    if device != "cpu":
        return "fp32", f"fp32: bf16 autocast is not set up for {device}"
    f = cpu_flags() if flags is None else flags
    have = [k for k in BF16_FLAGS if f.get(k)]
    if have:
        return "bf16", f"bf16 autocast, fp32 weights: this CPU has {' and '.join(have)}"
    if choice == "bf16":
        return "fp32", (
            f"WORKBOOK_DTYPE=bf16 ignored: this CPU lacks {' and '.join(BF16_FLAGS)}, "
            "where bf16 runs far "
            "slower than fp32; using fp32"
        )
    return "fp32", f"fp32: this CPU has no bf16 units ({' / '.join(BF16_FLAGS)})"


# transformers' SDPA attention, registered under this name with PyTorch's math kernel wherever
# gradients flow (see attention_impl)
TRAIN_SDPA = "sdpa_math_when_training"


def _sdpa_math_when_training(module, query, key, value, attention_mask, **kwargs):
    """SDPA attention that takes PyTorch's math kernel when gradients are on, its default
    kernel (flash) otherwise."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if not torch.is_grad_enabled():
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    with sdpa_kernel([SDPBackend.MATH]):
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


def attention_impl(device: str, dtype: str, choice: str | None = None) -> str:
    """The attn_implementation to train with: on a CPU under bf16 autocast, SDPA with the math
    kernel for the steps that backpropagate (the flash kernel's bf16 backward is slow there:
    bench/sft_throughput.py prices it), plain 'sdpa' elsewhere or when `choice` (default
    $WORKBOOK_ATTENTION) is 'sdpa'."""
    if choice is None:
        choice = os.environ.get("WORKBOOK_ATTENTION", "math-when-training")
    if choice not in ("sdpa", "math-when-training"):
        raise ValueError(f"WORKBOOK_ATTENTION={choice!r}: use 'sdpa' or 'math-when-training'")
    if choice == "sdpa" or device != "cpu" or dtype != "bf16":
        return "sdpa"
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    AttentionInterface.register(TRAIN_SDPA, _sdpa_math_when_training)
    AttentionMaskInterface.register(TRAIN_SDPA, sdpa_mask)
    return TRAIN_SDPA


def int8_dynamic_modules(model) -> int:
    """How many of the model's modules are torch.ao dynamic-int8 Linears (their kernels take fp32
    activations only)."""
    return sum(
        type(m).__module__.startswith("torch.ao.nn.quantized.dynamic") for m in model.modules()
    )


def generation_dtype(model, device: str | None = None) -> str:
    """compute_dtype for generating with this model: fp32 where it holds dynamic-int8 Linears,
    which bf16 crashes."""
    device = device or getattr(getattr(model, "device", None), "type", "cpu")
    return "fp32" if int8_dynamic_modules(model) else compute_dtype(device)[0]


def autocast(dtype: str, device: str = "cpu"):
    """A torch.autocast context for bf16 (weights and optimizer stay fp32), a no-op for fp32."""
    if dtype != "bf16":
        return nullcontext()
    import torch

    return torch.autocast(device_type="cuda" if device == "cuda" else "cpu", dtype=torch.bfloat16)


# Rows per generate call. A 135M model decodes a 16-row batch at a small fraction of the CPU's
# matmul speed; on the AVX2 EPYC (2026-12-01, bench/decode_batch.py) 50 tickets took 44 s in batches
# of 16 and 30 s in one batch of 50, with identical outputs, while 96 rows in one batch (58 s) lost
# to two of 48 (52 s): padding and the attention cache grow with the batch (32 rows a batch: 50 s).
# Batches are balanced: at most 64 rows, so 50 rows run as one batch and 96 as two of 48, never as
# 64 + 32 or with a small remainder.
GEN_ROWS = 64


def row_batches(n: int, most: int = GEN_ROWS) -> list[range]:
    """Split n rows into the fewest batches of at most `most` rows, of near-equal size (no small
    remainder)."""
    if n <= 0:
        return []
    if most < 1:
        raise ValueError(f"row_batches: most must be >= 1 row per batch, got {most}")
    count = -(-n // most)
    size = -(-n // count)
    return [range(start, min(start + size, n)) for start in range(0, n, size)]


_LAYOUT_GAIN: float | None = None
# far from timing noise: the AVX2 EPYC measured 1.15 and 1.3 in one CI run, Intel MKL 4.5-4.9
LAYOUT_MIN_GAIN = 2.0


def small_batch_layout_gain(rows: int = 16, n: int = 1536, k: int = 576, reps: int = 20) -> float:
    """How much faster x @ W' (W' = W transposed, contiguous) runs than torch's x @ W.T at
    decoding's batch shapes.

    nn.Linear stores W as (out, in) and multiplies by its transpose. Some BLAS builds (MKL on the
    course's CPUs) take a slow path for that layout when the batch is small, as it is at each
    decoding step. Measured once per process on this machine (about 50 ms), at torch's current
    thread count, in fp32.
    """
    global _LAYOUT_GAIN
    if _LAYOUT_GAIN is None:
        import time

        import torch

        # a private generator: a caller that seeded torch (align.sample) keeps its random stream
        gen = torch.Generator().manual_seed(0)
        w = torch.randn(n, k, generator=gen)
        wt, x = w.t().contiguous(), torch.randn(rows, k, generator=gen)

        def best(f) -> float:
            f()
            times = []
            for _ in range(reps):
                t0 = time.perf_counter()
                f()
                times.append(time.perf_counter() - t0)
            return min(times)

        _LAYOUT_GAIN = best(lambda: torch.nn.functional.linear(x, w)) / best(lambda: x @ wt)
    return _LAYOUT_GAIN


def _transposed_forward(self, x, *args, **kwargs):
    """A linear layer's forward through its cached transposed weight (inference only)."""
    y = x @ self._decode_wt
    return y if self._decode_b is None else y + self._decode_b


def _bf16_forward(self, x, *args, **kwargs):
    """A plain linear layer's forward through bf16 copies of its weight and bias, taken once: under
    CPU bf16 autocast the same product autocast computes (it rounds the fp32 weight to bf16 on
    every call), without that call's cast; the plain forward outside autocast."""
    import torch

    if torch.is_autocast_enabled("cpu"):
        return torch.nn.functional.linear(x, self._decode_w16, self._decode_b16)
    return torch.nn.functional.linear(x, self.weight, self.bias)


def _give_bf16_copy(mod) -> None:
    """Make a plain nn.Linear run _bf16_forward over bf16 copies of its weight and bias."""
    import types

    import torch

    mod._decode_w16 = mod.weight.detach().to(torch.bfloat16)
    mod._decode_b16 = None if mod.bias is None else mod.bias.detach().to(torch.bfloat16)
    mod.forward = types.MethodType(_bf16_forward, mod)


def _drop_patch(mod) -> None:
    """Undo _give_bf16_copy or decode_layout's transposed layout: the class's forward again."""
    del mod.forward
    for name in ("_decode_wt", "_decode_b", "_decode_w16", "_decode_b16"):
        mod.__dict__.pop(name, None)


def _decode_weight(mod):
    """(weight, bias) a layer computes with: a plain fp32 nn.Linear, or a PEFT LoRA layer over
    one with its active plain-LoRA adapters folded in (W + scale * B @ A, as merging does); None
    for anything else."""
    import torch

    base = getattr(mod, "base_layer", None)
    if type(mod) is torch.nn.Linear:
        base = mod
    elif not (
        type(base) is torch.nn.Linear
        and hasattr(mod, "lora_A")
        and hasattr(mod, "get_delta_weight")
    ):
        return None
    if base.weight.dtype != torch.float32:
        return None
    w = base.weight.detach()
    if mod is not base and not mod.disable_adapters and not mod.merged:
        active = [a for a in mod.active_adapters if a in mod.lora_A.keys()]
        if any(a in getattr(mod, "lora_variant", {}) for a in active):
            # DoRA and other variants: leave them as they are
            return None
        for a in active:
            w = w + mod.get_delta_weight(a).to(w.dtype)
    return w, (None if base.bias is None else base.bias.detach())


BF16_PRECAST = True  # decode_layout's bf16 weight copies (bench/decode_layout.py --bf16 compares)


@contextmanager
def decode_layout(model, dtype: str = "fp32", rows: int = 16):
    """For fast decoding on a CPU, inside the block:
    - fp32: every fp32 linear layer (a LoRA layer with its adapter folded in, as a merge would)
      multiplies by a contiguous transposed copy of its weight, where this machine measures that
      layout >= LAYOUT_MIN_GAIN x faster (batches of 4 rows or more). The products equal the plain
      ones up to fp32 rounding (summation order), so a path that must match another token for token
      does not use it.
    - bf16 (autocast): every plain nn.Linear, LoRA's A and B included, multiplies by a bf16 copy of
      its weight taken once, instead of autocast rounding the fp32 weight to bf16 again at every
      call of every decoding step: the same rounding, so the same outputs bit for bit. Measured on
      the AVX512-BF16 EPYC (2026-12-03, notebook 04's CI adapter merged, held-out tickets in one
      batch): 1.4x faster at 4 rows, 1.2x at 16, no gain at 50 (bench/decode_layout.py --bf16).
      BF16_PRECAST = False turns it off.

    Inference only (the copies are taken on entry and dropped on exit, so training between blocks is
    seen); a no-op on GPUs. Yields the number of layers patched.
    """
    import types

    import torch

    # nested (fast_generate inside evaluate.generate): the outer rules
    if model.__dict__.get("_decode_layout_entered"):
        yield 0
        return
    on_cpu = next(model.parameters()).device.type == "cpu"
    use = dtype == "fp32" and rows >= 4 and on_cpu and small_batch_layout_gain() >= LAYOUT_MIN_GAIN
    patched, inside = [], set()
    model.__dict__["_decode_layout_entered"] = True
    try:
        if dtype == "bf16" and on_cpu and BF16_PRECAST:
            with torch.no_grad():
                for mod in model.modules():
                    # a layer frozen_bf16_copies already gave a copy keeps it (a GRPO rollout)
                    if (
                        type(mod) is torch.nn.Linear
                        and mod.weight.dtype == torch.float32
                        and "forward" not in mod.__dict__
                    ):
                        _give_bf16_copy(mod)
                        patched.append(mod)
        elif use:
            with torch.no_grad():
                for mod in model.modules():
                    if (
                        id(mod) in inside
                        or "forward" in mod.__dict__
                        or (wb := _decode_weight(mod)) is None
                    ):
                        continue
                    inside.update(id(m) for m in mod.modules())
                    mod._decode_wt, mod._decode_b = wb[0].t().contiguous(), wb[1]
                    mod.forward = types.MethodType(_transposed_forward, mod)
                    patched.append(mod)
        yield len(patched)
    finally:
        for mod in patched:
            _drop_patch(mod)
        model.__dict__.pop("_decode_layout_entered", None)


@contextmanager
def frozen_bf16_copies(model):
    """For training under CPU bf16 autocast: inside the block, every frozen fp32 nn.Linear (the
    base under LoRA; not the LM head) multiplies by a bf16 copy of its weight taken once on entry,
    where autocast would round the fp32 weight to bf16 again at every forward (it caches casts only
    of weights that take gradients). The same rounding, so the same losses and gradients bit for bit
    (tests/test_runtime.py); 0.88-0.91x the time of a recipe step on the AMX Xeon (LEDGER, "Frozen
    weights rounded once"). Outside autocast the layer runs as before. The copies go on exit, so
    a merge after training is seen. Yields the number of layers given a copy."""
    import torch

    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    patched = []
    try:
        with torch.no_grad():
            for mod in model.modules():
                if (
                    type(mod) is torch.nn.Linear
                    and mod is not head
                    and mod.weight.dtype == torch.float32
                    and mod.weight.device.type == "cpu"
                    and not mod.weight.requires_grad
                    and "forward" not in mod.__dict__
                ):
                    _give_bf16_copy(mod)
                    patched.append(mod)
        yield len(patched)
    finally:
        for mod in patched:
            _drop_patch(mod)


def drop_bf16_copies(model) -> int:
    """Drop every bf16 weight copy a layer still holds (a training run interrupted inside
    frozen_bf16_copies keeps them), before weights change in place (a merge); returns how many."""
    held = [m for m in model.modules() if "_decode_w16" in m.__dict__ and "forward" in m.__dict__]
    for mod in held:
        _drop_patch(mod)
    return len(held)


def fast_generate(model):
    """Route model.generate through decode_layout, for generation inside trainers (GRPO's
    rollouts); returns model."""
    plain = model.generate

    def generate(*args, **kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        device = next(model.parameters()).device.type
        with decode_layout(
            model, generation_dtype(model, device), 0 if ids is None else int(ids.shape[0])
        ):
            return plain(*args, **kwargs)

    model.generate = generate
    return model


def setup(seed: int = 0, threads: int | None = None) -> Runtime:
    """Pick device, backend and compute dtype, set threads and seeds; call once at the top of a
    notebook."""
    device = pick_device()
    backend, reason = pick_backend(device)
    dtype, why = compute_dtype(device)
    if why.startswith("WORKBOOK_DTYPE=bf16 ignored"):
        print(why)
    n = set_threads(threads)
    seed_everything(seed)
    return Runtime(device, backend, reason, n, dtype, why)


def version(pkg: str) -> str | None:
    """Installed version of a distribution, or None."""
    try:
        return md.version(pkg)
    except md.PackageNotFoundError:
        return None


def _cpuinfo_field(name: str, cpuinfo: str | None = None) -> str:
    """The first value of a /proc/cpuinfo field ('flags', 'model name'); empty where it cannot be
    read."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return ""
    return next(
        (ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith(name)), ""
    )


def cpu_flags(cpuinfo: str | None = None) -> dict[str, bool]:
    """Which of CPU_FLAGS the processor reports (from /proc/cpuinfo; all False where it cannot be
    read)."""
    present = set(_cpuinfo_field("flags", cpuinfo).split())
    return {f: f in present for f in CPU_FLAGS}


def math_backends() -> dict:
    """torch's CPU math settings: the kernel level it dispatches to, oneDNN/MKL availability,
    fp32 matmul precision."""
    import torch

    return {
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "mkl": torch.backends.mkl.is_available(),
        "fp32_matmul_precision": torch.get_float32_matmul_precision(),
        "processor": cpu_model(),
    }


def cpu_model() -> str:
    """The processor's model name from /proc/cpuinfo (e.g. 'AMD EPYC'), else the platform's
    machine type."""
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


def matmul_gflops(n: int = 1024, dtype: str = "float32", seconds: float = 0.5) -> float:
    """This machine's square-matmul speed now, at torch's current thread count (a speed floor to
    read timings by)."""
    import time

    import torch

    # a private generator: machine() runs between a caller's seed and its draws (notebook cells)
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(getattr(torch, dtype))
    b = torch.randn(n, n, generator=gen).to(getattr(torch, dtype))
    a @ b  # warm-up: the kernel choice and the first allocation
    reps, t0 = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds:
        a @ b
        reps += 1
    return 2 * n**3 * reps / elapsed / 1e9


def machine(speed: bool = True) -> dict:
    """The processor flags, torch's math settings and (optionally) the fp32 matmul speed,
    recorded with measurements."""
    out = {"cpu_flags": cpu_flags(), **math_backends()}
    if speed:
        out["fp32_matmul_gflops_1024"] = round(matmul_gflops(), 1)
        # > LAYOUT_MIN_GAIN: decode_layout is on
        out["decode_layout_gain"] = round(small_batch_layout_gain(), 2)
    return out


def cpu_label(flags: dict[str, bool] | None = None) -> str:
    """Short form of the flags, e.g. 'AVX2, no AVX-512, no bf16 units' or 'AVX-512, AMX-BF16,
    AVX512-BF16'."""
    f = cpu_flags() if flags is None else flags
    parts = ["AVX2" if f["avx2"] else "no AVX2", "AVX-512" if f["avx512f"] else "no AVX-512"]
    bf16 = [
        name for key, name in (("amx_bf16", "AMX-BF16"), ("avx512_bf16", "AVX512-BF16")) if f[key]
    ]
    return ", ".join(parts + (bf16 or ["no bf16 units"]))


def env_line(rt: Runtime) -> str:
    """One line: package versions, device and backend (and why), the processor's flags and
    torch's kernel level."""
    vers = " ".join(f"{p} {v}" for p in VERSIONED if (v := version(p)))
    mb = math_backends()
    cpu = (
        f"CPU {mb['processor']}: {cpu_label()} | torch kernels {mb['cpu_capability']}, oneDNN "
        f"{'on' if mb['mkldnn'] else 'off'}"
    )
    return (
        f"{rt.label} ({rt.reason}) | {rt.dtype_reason or rt.dtype} | {rt.threads} threads | {cpu} "
        f"| Python {platform.python_version()} | {vers}"
    )


def repo_root() -> Path:
    """The course checkout: $WORKBOOK_ROOT, else the nearest parent of cwd with a pyproject.toml."""
    if os.environ.get("WORKBOOK_ROOT"):
        return Path(os.environ["WORKBOOK_ROOT"]).resolve()
    for p in [Path.cwd(), *Path.cwd().parents]:
        if (p / "pyproject.toml").exists() and (p / "helpers").is_dir():
            return p
    return Path(__file__).resolve().parents[1]


def _numbered(path: Path):
    """path, path-2, path-3, ...: the names successive runs into one folder get."""
    yield path
    k = 2
    while True:
        yield path.with_name(f"{path.name}-{k}")
        k += 1


def free_path(path: Path) -> Path:
    """path itself if unused, else path-2, path-3, ...: the first name nothing occupies yet."""
    return next(c for c in _numbered(path) if not c.exists())


def fresh_dir(path: Path) -> Path:
    """A new folder at free_path(path): a run folder is never overwritten."""
    cand = free_path(path)
    cand.mkdir(parents=True)
    return cand


def latest_run(course_dir: str | Path, notebook: str) -> Path:
    """The newest of <course_dir>/<notebook>, <notebook>-2, ...: where a rerun into the same
    course folder wrote."""
    names = _numbered(Path(course_dir) / notebook)
    last = next(names)
    for cand in names:
        if not cand.exists():
            return last
        last = cand


def run_dir(notebook: str, course_dir: str | Path = "") -> Path:
    """A new folder for this notebook's outputs: <course_dir>/<notebook>/ or
    runs/<notebook>/<timestamp>/."""
    if course_dir:
        return fresh_dir(Path(course_dir) / notebook)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return fresh_dir(repo_root() / "runs" / notebook / stamp)


def find_artifact(name: str, notebook: str, course_dir: str | Path = "") -> Path | None:
    """Newest file `name` written by an earlier notebook, in this course run first, then any run."""
    if course_dir and (hit := latest_run(course_dir, notebook) / name).exists():
        return hit
    runs = repo_root() / "runs"
    hits = list(runs.glob(f"*/{notebook}/{name}")) + list(runs.glob(f"{notebook}/*/{name}"))
    return max(hits, key=lambda p: p.stat().st_mtime) if hits else None


def _jsonable(x):
    """Make numpy scalars and paths JSON-serialisable."""
    if isinstance(x, (np.integer, np.floating)):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"metrics value of type {type(x).__name__} is not JSON-serialisable")


def write_metrics(folder: Path, metrics: dict, rt: Runtime | None = None) -> Path:
    """Write metrics.json in the run folder (with the environment line); return its path."""
    payload = {"written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), **metrics}
    if rt is not None:
        payload["environment"] = {
            "device": rt.device,
            "backend": rt.backend,
            "dtype": rt.dtype,
            "line": env_line(rt),
            "threads": rt.threads,
            "machine": machine(),
        }
    path = Path(folder) / "metrics.json"
    path.write_text(json.dumps(payload, indent=2, default=_jsonable), encoding="utf-8")
    return path
