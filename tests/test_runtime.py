"""helpers.runtime: device, backend, threads, run folders and metrics."""

from __future__ import annotations

import contextlib
import json
import os
import types

import pytest

from helpers import runtime


def test_cpu_backend_is_portable_and_says_why():
    backend, why = runtime.pick_backend("cpu")
    assert backend == "PEFT+TRL" and "CUDA" in why


def test_setup_and_env_line():
    import torch

    rt = runtime.setup(seed=3, threads=1)
    assert torch.get_num_threads() == 1
    line = runtime.env_line(rt)
    assert f"torch {torch.__version__}" in line and rt.backend in line
    runtime.set_threads()


def test_seed_everything_repeats_random_draws():
    import torch

    runtime.seed_everything(7)
    a = torch.rand(3)
    runtime.seed_everything(7)
    assert torch.equal(a, torch.rand(3))


def test_run_dir_never_overwrites(tmp_path):
    a = runtime.run_dir("01_x", tmp_path)
    b = runtime.run_dir("01_x", tmp_path)
    assert a != b and a.exists() and b.exists() and b.name == "01_x-2"


def test_find_artifact_prefers_this_course_run(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBOOK_ROOT", str(tmp_path))
    (tmp_path / "runs" / "old" / "02_y").mkdir(parents=True)
    (tmp_path / "runs" / "old" / "02_y" / "a.txt").write_text("old")
    course = tmp_path / "runs" / "now"
    assert runtime.find_artifact("a.txt", "02_y", course).read_text() == "old"
    (course / "02_y").mkdir(parents=True)
    (course / "02_y" / "a.txt").write_text("new")
    assert runtime.find_artifact("a.txt", "02_y", course).read_text() == "new"
    assert runtime.find_artifact("missing.txt", "02_y", course) is None


def test_a_rerun_into_the_same_course_folder_is_what_later_readers_find(tmp_path):
    first = runtime.run_dir("05_z", tmp_path)
    (first / "metrics.json").write_text("first")
    assert runtime.latest_run(tmp_path, "05_z") == first
    second = runtime.run_dir("05_z", tmp_path)  # a rerun never overwrites: it writes 05_z-2
    (second / "metrics.json").write_text("second")
    assert second.name == "05_z-2" and runtime.latest_run(tmp_path, "05_z") == second
    assert runtime.find_artifact("metrics.json", "05_z", tmp_path).read_text() == "second"
    # nothing yet: the first name
    assert runtime.latest_run(tmp_path, "06_none") == tmp_path / "06_none"


def test_write_metrics_round_trips_numpy(tmp_path):
    import numpy as np

    rt = runtime.setup(0)
    path = runtime.write_metrics(tmp_path, {"acc": np.float32(0.5), "n": np.int64(3)}, rt)
    got = json.loads(path.read_text())
    assert got["acc"] == 0.5 and got["n"] == 3 and got["environment"]["device"] == "cpu"
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        runtime.write_metrics(tmp_path, {"bad": object()})


AVX2_ONLY = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n"
AMX = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"


def test_cpu_flags_read_from_cpuinfo():
    assert runtime.cpu_flags(AVX2_ONLY) == {
        "avx2": True,
        "avx512f": False,
        "avx512_bf16": False,
        "amx_bf16": False,
        "amx_tile": False,
    }
    assert all(runtime.cpu_flags(AMX).values())
    assert not any(runtime.cpu_flags("").values())  # unreadable: nothing claimed
    assert runtime.cpu_label(runtime.cpu_flags(AVX2_ONLY)) == "AVX2, no AVX-512, no bf16 units"
    assert runtime.cpu_label(runtime.cpu_flags(AMX)) == "AVX2, AVX-512, AMX-BF16, AVX512-BF16"


def test_env_line_and_metrics_name_the_machine(tmp_path):
    rt = runtime.setup(seed=0)
    line = runtime.env_line(rt)
    assert runtime.cpu_label() in line and "torch kernels" in line
    m = json.loads(runtime.write_metrics(tmp_path, {"x": 1}, rt).read_text())["environment"][
        "machine"
    ]
    assert set(m["cpu_flags"]) == set(runtime.CPU_FLAGS) and m["cpu_capability"] and "mkldnn" in m


def test_compute_dtype_follows_the_processor_and_workbook_dtype():
    avx2, amx = runtime.cpu_flags(AVX2_ONLY), runtime.cpu_flags(AMX)
    assert runtime.compute_dtype("cpu", "auto", amx)[0] == "bf16"
    assert "amx_bf16" in runtime.compute_dtype("cpu", "auto", amx)[1]
    dtype, why = runtime.compute_dtype("cpu", "auto", avx2)
    assert dtype == "fp32" and "no bf16 units" in why
    assert runtime.compute_dtype("cpu", "fp32", amx) == ("fp32", "fp32: WORKBOOK_DTYPE=fp32")
    # asked for, not there: fall back, name the flags
    dtype, why = runtime.compute_dtype("cpu", "bf16", avx2)
    assert (
        dtype == "fp32"
        and "amx_bf16" in why
        and "avx512_bf16" in why
        and "WORKBOOK_DTYPE=bf16" in why
    )
    with pytest.raises(ValueError, match="WORKBOOK_DTYPE='fp8'.*fp32, bf16"):
        runtime.compute_dtype("cpu", "fp8", amx)


def test_setup_prints_one_line_when_bf16_is_missing(monkeypatch, capsys):
    monkeypatch.setenv("WORKBOOK_DTYPE", "bf16")
    monkeypatch.setattr(
        runtime, "cpu_flags", lambda cpuinfo=None: {f: f == "avx2" for f in runtime.CPU_FLAGS}
    )
    rt = runtime.setup(0)
    printed = capsys.readouterr().out.strip().splitlines()
    assert (
        rt.dtype == "fp32" and len(printed) == 1 and "lacks amx_bf16 and avx512_bf16" in printed[0]
    )
    assert "WORKBOOK_DTYPE=bf16 ignored" in runtime.env_line(rt)
    monkeypatch.setenv("WORKBOOK_DTYPE", "fp32")
    assert runtime.setup(0).dtype == "fp32" and capsys.readouterr().out == ""
    runtime.set_threads()


def _tiny_llama_config(**sizes):
    """A 2-layer random Llama's config (64-word vocabulary, 4 heads over 2 KV heads), with the
    given widths and options."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        **sizes,
    )


def _tiny_lora_model():
    """A tiny random Llama with a LoRA adapter whose B is non-zero (so the fold is visible)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    model = get_peft_model(
        LlamaForCausalLM(_tiny_llama_config(hidden_size=32, intermediate_size=64)),
        LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"),
    )
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)
    return model.eval()


def test_decode_layout_folds_lora_matches_plain_within_rounding_and_restores(monkeypatch):
    import torch

    monkeypatch.setattr(runtime, "_LAYOUT_GAIN", 10.0)  # as on a machine where the layout pays
    model = _tiny_lora_model()
    ids = torch.randint(0, 64, (8, 12))
    with torch.no_grad():
        plain = model(ids).logits
        with runtime.decode_layout(model, "fp32", rows=8) as n:
            fast = model(ids).logits
            with model.disable_adapter():
                fast_base = model(ids).logits
        with model.disable_adapter():
            base = model(ids).logits
        # the float64 answer both should round to
        ref = model.double()(ids).logits.float()
        model.float()
    assert n == 2 * 7 + 1  # 7 LoRA layers a block (q k v o gate up down), one plain lm_head
    # the adapter changes the output, so folding is tested
    assert (plain - base).abs().max() > 1e-2
    # fp32 rounding of the plain path, this machine, this run
    floor = (plain - ref).abs().max().item()
    assert (fast - ref).abs().max().item() <= 4 * floor + 1e-7, ((fast - ref).abs().max(), floor)
    # folded on entry: disabling inside the block is not seen
    assert (fast_base - base).abs().max().item() > 1e-2
    assert all(
        "forward" not in m.__dict__ and not hasattr(m, "_decode_wt") for m in model.modules()
    )
    with torch.no_grad():
        assert torch.equal(model(ids).logits, plain)  # restored exactly


def test_decode_layout_is_a_no_op_where_it_does_not_pay(monkeypatch):
    model = _tiny_lora_model()
    monkeypatch.setattr(runtime, "_LAYOUT_GAIN", 1.0)
    with runtime.decode_layout(model, "fp32", rows=16) as n:
        assert n == 0
    monkeypatch.setattr(runtime, "_LAYOUT_GAIN", 10.0)
    with runtime.decode_layout(model, "fp32", 2) as n:
        assert n == 0
    # measured once per process, then reused
    assert runtime.small_batch_layout_gain() == 10.0


def test_bf16_decode_precasts_every_linear_and_changes_no_bit():
    """Under CPU bf16 autocast, decode_layout's bf16 copies of the weights give the same logits
    and the same greedy tokens, bit for bit, as autocast rounding the fp32 weights at every call;
    outside autocast the patched layers compute in fp32 as before; on exit every layer is
    restored."""
    import torch

    model = _tiny_lora_model()
    ids = torch.randint(0, 64, (3, 9))
    kw = {"max_new_tokens": 6, "do_sample": False, "pad_token_id": 0}
    with torch.no_grad():
        plain_fp32 = model(ids).logits
        with torch.autocast("cpu", dtype=torch.bfloat16):
            plain = model(ids).logits
            plain_gen = model.generate(input_ids=ids, **kw)
        with runtime.decode_layout(model, "bf16", rows=3) as n:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                fast = model(ids).logits
                fast_gen = model.generate(input_ids=ids, **kw)
            outside = model(ids).logits
    # 7 LoRA layers a block, each a base layer and LoRA's A and B, and the lm_head
    assert n == 2 * 7 * 3 + 1
    assert torch.equal(fast, plain) and torch.equal(fast_gen, plain_gen)
    assert (plain.float() - plain_fp32).abs().max() > 0  # bf16 rounding is in play, so it is tested
    assert torch.equal(outside, plain_fp32)
    assert not any("_decode_w16" in m.__dict__ or "forward" in m.__dict__ for m in model.modules())


def _train_steps(model, ids, steps: int = 3, copies: bool = False):
    """Losses and the trainable weights after `steps` AdamW steps under CPU bf16 autocast."""
    import torch

    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    with runtime.frozen_bf16_copies(model) if copies else contextlib.nullcontext():
        for _ in range(steps):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
            losses.append(loss.item())
    return losses, {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def test_frozen_bf16_copies_train_bit_for_bit_as_autocast_and_restore():
    """Training under CPU bf16 autocast with the frozen layers' bf16 copies gives the same losses
    and adapter weights, bit for bit, as autocast's own casts; only frozen plain layers (not LoRA's
    A and B, not the LM head) get a copy; on exit every layer is restored, so a change to a weight
    after training (a merge) is seen."""
    import torch

    ids = torch.randint(0, 64, (4, 10), generator=torch.Generator().manual_seed(1))
    plain_losses, plain_w = _train_steps(_tiny_lora_model().train(), ids)
    model = _tiny_lora_model().train()
    with runtime.frozen_bf16_copies(model) as n:
        patched = [m for m in model.modules() if "forward" in m.__dict__]
        # a GRPO rollout inside training: decode_layout leaves the held copies alone
        with runtime.decode_layout(model, "bf16", rows=4) as n_decode:
            pass
        assert all("forward" in m.__dict__ for m in patched)
    fast_losses, fast_w = _train_steps(_tiny_lora_model().train(), ids, copies=True)
    # the 7 frozen base layers of a block, 2 blocks; LoRA's A and B train, the LM head is skipped
    assert n == 2 * 7 and n_decode == 2 * 7 * 2 + 1
    assert all(not m.weight.requires_grad for m in patched)
    assert fast_losses == plain_losses and plain_losses[0] != plain_losses[-1]
    assert all(torch.equal(fast_w[k], plain_w[k]) for k in plain_w)
    assert not any("_decode_w16" in m.__dict__ or "forward" in m.__dict__ for m in model.modules())
    # restored: a weight changed in place after the block is what the layer computes with
    layer = patched[0]
    x = torch.randn(2, layer.in_features)
    with torch.no_grad():
        layer.weight.mul_(2.0)
        assert torch.equal(layer(x), torch.nn.functional.linear(x, layer.weight, layer.bias))


def test_an_interrupted_runs_copies_are_dropped_before_a_merge():
    """A run interrupted inside frozen_bf16_copies leaves the copies; drop_bf16_copies (which
    train.merge calls before folding the adapter in) removes them, so the merged layers compute
    with the merged weights under autocast, not with the stale copies."""
    import torch

    model = _tiny_lora_model()
    interrupted = runtime.frozen_bf16_copies(model)
    assert interrupted.__enter__() == 14  # no __exit__: a KeyboardInterrupt in train()
    assert runtime.drop_bf16_copies(model) == 14
    merged = model.merge_and_unload()
    layer = merged.model.layers[0].self_attn.q_proj
    x = torch.randn(2, layer.in_features)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(layer(x), torch.nn.functional.linear(x, layer.weight, layer.bias))
    assert not any("_decode_w16" in m.__dict__ for m in merged.modules())


def test_frozen_bf16_callback_holds_copies_for_bf16_training_only(monkeypatch):
    """The callback train.frozen_bf16_on_cpu registers (once, however often it is called) holds
    the copies from on_train_begin to on_train_end when the trainer trains in bf16, and does nothing
    in fp32."""
    import transformers.trainer as hf_trainer

    from helpers import train

    monkeypatch.setattr(hf_trainer, "DEFAULT_CALLBACKS", list(hf_trainer.DEFAULT_CALLBACKS))
    train.frozen_bf16_on_cpu()
    train.frozen_bf16_on_cpu()
    mine = [c for c in hf_trainer.DEFAULT_CALLBACKS if getattr(c, "frozen_bf16", False)]
    assert len(mine) == 1
    model = _tiny_lora_model()
    for bf16, expected in ((True, 14), (False, 0)):
        cb = mine[0]()
        args = types.SimpleNamespace(bf16=bf16)
        cb.on_train_begin(args, None, None, model=model)
        assert sum("_decode_w16" in m.__dict__ for m in model.modules()) == expected
        cb.on_train_end(args, None, None, model=model)
        assert not any("forward" in m.__dict__ for m in model.modules())


def test_fast_generate_patches_inside_generate_only_and_defers_to_an_outer_block(monkeypatch):
    import torch

    monkeypatch.setattr(runtime, "_LAYOUT_GAIN", 10.0)
    # the layout is fp32's; under bf16 autocast it is off by design
    monkeypatch.setenv("WORKBOOK_DTYPE", "fp32")
    model = _tiny_lora_model()
    seen = []
    plain = model.generate
    model.generate = lambda *a, **k: (
        seen.append(sum("_decode_wt" in m.__dict__ for m in model.modules())) or plain(*a, **k)
    )
    runtime.fast_generate(model)
    ids = torch.randint(0, 64, (8, 5))
    out = model.generate(input_ids=ids, max_new_tokens=3, do_sample=False, pad_token_id=0)
    # an outer block asking for the plain layout
    with runtime.decode_layout(model, "fp32", rows=0):
        same = model.generate(input_ids=ids, max_new_tokens=3, do_sample=False, pad_token_id=0)
    assert seen == [15, 0] and out.shape == (8, 8) and torch.equal(out, same)
    assert not any("_decode_wt" in m.__dict__ for m in model.modules())


def test_row_batches_are_balanced_and_cover_every_row_once():
    assert [len(b) for b in runtime.row_batches(50, 48)] == [25, 25]  # not 48 + 2
    assert [len(b) for b in runtime.row_batches(48, 48)] == [48]
    assert [len(b) for b in runtime.row_batches(200, 48)] == [40] * 5
    assert [len(b) for b in runtime.row_batches(96)] == [48, 48] and [
        len(b) for b in runtime.row_batches(50)
    ] == [50]
    assert runtime.row_batches(0) == []
    for n in (1, 7, 49, 97, 1000):
        spans = runtime.row_batches(n, 48)
        assert [i for s in spans for i in s] == list(range(n)) and max(map(len, spans)) <= 48
        assert max(map(len, spans)) - min(map(len, spans)) <= max(map(len, spans)) // 2 + 1, spans
    with pytest.raises(ValueError, match="at least|>= 1"):
        runtime.row_batches(5, 0)


def test_training_attention_takes_the_math_kernel_only_under_grad_and_matches_sdpa(monkeypatch):
    """By default (WORKBOOK_ATTENTION=math-when-training), on a CPU under bf16 autocast, training
    uses SDPA whose flash kernel is off wherever gradients flow (its bf16 backward is the slow one)
    and on for no-grad forwards such as generation; loss and gradients match plain SDPA's within
    bf16 rounding. Everywhere else, and with WORKBOOK_ATTENTION=sdpa, it is plain 'sdpa'."""
    import copy

    import torch
    import transformers.integrations.sdpa_attention as sa
    from transformers import LlamaForCausalLM

    switch = "math-when-training"
    assert runtime.attention_impl("cpu", "bf16", "sdpa") == "sdpa"  # the opt-out
    monkeypatch.delenv("WORKBOOK_ATTENTION", raising=False)
    assert runtime.attention_impl("cpu", "bf16") == runtime.TRAIN_SDPA  # the default
    assert runtime.attention_impl("cpu", "fp32", switch) == "sdpa"
    assert runtime.attention_impl("cuda", "bf16", switch) == "sdpa"
    with pytest.raises(ValueError, match="WORKBOOK_ATTENTION='flash'"):
        runtime.attention_impl("cpu", "bf16", "flash")
    name = runtime.attention_impl("cpu", "bf16", switch)
    assert name == runtime.TRAIN_SDPA
    seen = []
    real = sa.sdpa_attention_forward

    def spy(*args, **kwargs):
        seen.append((torch.is_grad_enabled(), torch.backends.cuda.flash_sdp_enabled()))
        return real(*args, **kwargs)

    monkeypatch.setattr(sa, "sdpa_attention_forward", spy)
    torch.manual_seed(0)
    plain = LlamaForCausalLM(
        _tiny_llama_config(hidden_size=64, intermediate_size=128, attn_implementation="sdpa")
    )
    ours = copy.deepcopy(plain)
    ours.set_attn_implementation(name)
    ids = torch.randint(0, 64, (3, 12))
    mask = torch.ones_like(ids)
    mask[0, :4] = 0  # a left-padded row, so the mask is in play
    result = {}
    for label, model in (("sdpa", plain), ("ours", ours)):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(input_ids=ids, attention_mask=mask, labels=ids).loss
        loss.backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters()])
        result[label] = (loss.item(), grads)
    assert seen == [(True, False)] * 2  # one call a layer, flash off under grad
    assert result["ours"][0] == pytest.approx(result["sdpa"][0], abs=0.02)
    cos = torch.nn.functional.cosine_similarity(result["ours"][1], result["sdpa"][1], dim=0)
    assert cos > 0.999
    seen.clear()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        ours(input_ids=ids, attention_mask=mask)
    assert seen == [(False, True)] * 2  # no gradients: the default kernels


def test_set_threads_turns_the_tokenizers_pool_off_unless_the_user_chose(monkeypatch):
    monkeypatch.delenv("TOKENIZERS_PARALLELISM", raising=False)
    runtime.set_threads(1)
    assert os.environ["TOKENIZERS_PARALLELISM"] == "false"
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "true")
    runtime.set_threads(1)
    assert os.environ["TOKENIZERS_PARALLELISM"] == "true"


@pytest.mark.parametrize(
    "measure",
    [
        # measured lazily at the first fp32 decode, right after align.sample's seed: the first
        # seeded sample differed from the second (a fresh-clone CI in fp32 on a Zen 5 EPYC)
        lambda: runtime.small_batch_layout_gain(),
        # runtime.machine() times it between a notebook's seed and its draws
        lambda: runtime.matmul_gflops(n=64, seconds=0.01),
    ],
    ids=["layout_gain", "matmul_gflops"],
)
def test_a_speed_measurement_leaves_the_callers_random_stream_alone(measure, monkeypatch):
    """The random matrices a speed measurement times must not come from torch's global
    generator, or a seed set before it no longer fixes what follows."""
    import torch

    monkeypatch.setattr(runtime, "_LAYOUT_GAIN", None)
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    assert measure() > 0
    assert torch.equal(torch.rand(3), expected)
