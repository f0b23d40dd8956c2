"""helpers.deploy: merged vs adapter, multi-LoRA routing, int8, and the throughput arithmetic."""

from __future__ import annotations

import warnings

import pytest
import torch

from helpers import align, deploy, models, prompts


@pytest.fixture(scope="module")
def two_adapters(model_dir, tmp_path_factory):
    """Two random, non-zero LoRA adapters on the offline base (B is not zero, so each changes the
    model)."""
    from peft import LoraConfig, get_peft_model

    out = {}
    for name, seed in (("one", 1), ("two", 2)):
        torch.manual_seed(seed)
        cfg = LoraConfig(
            r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False
        )
        model = get_peft_model(models.load(str(model_dir))[0], cfg)
        path = tmp_path_factory.mktemp(name)
        model.save_pretrained(path)
        out[name] = path
    return out


CONVS = [
    prompts.messages(t, "trained")
    for t in ("Where is order ORD-123456?", "Cancel my plan now, please.")
]


def test_merge_gives_the_adapter_logits(model_dir, model_and_tok, two_adapters):
    _, tok = model_and_tok
    adapter = deploy.load_adapter_model(model_dir, two_adapters["one"])
    merged = deploy.load_adapter_model(model_dir, two_adapters["one"], merge=True)
    assert not hasattr(merged, "peft_config") and not any(
        "lora" in n for n, _ in merged.named_parameters()
    )
    gap = deploy.merge_gap(adapter, merged, tok, CONVS)
    # bounds from this machine's own fp32 rounding (measured in the same call), never from another
    # machine's numbers
    assert 0 < gap["floor"] < 1e-3 * gap["logit_scale"], gap  # fp32 is off by far less than 0.1%
    assert gap["gap_fp64"] <= 2 * gap["floor"] and gap["gap"] <= 4 * gap["floor"], gap
    # the adapter really changes the model, so a merge that dropped it would fail the checks above
    assert (
        deploy.logits_gap(adapter, models.load(str(model_dir))[0], tok, CONVS) > 1000 * gap["floor"]
    )


def test_the_loader_without_an_adapter_is_the_base(model_dir, model_and_tok):
    base, tok = model_and_tok
    alone = deploy.load_adapter_model(model_dir)
    assert not hasattr(alone, "peft_config") and not alone.training
    assert deploy.logits_gap(alone, base, tok, CONVS) == 0.0


def test_a_wrong_merge_is_far_above_the_rounding_floor(model_dir, model_and_tok, two_adapters):
    _, tok = model_and_tok
    adapter = deploy.load_adapter_model(model_dir, two_adapters["one"])
    wrong = deploy.load_adapter_model(model_dir, two_adapters["one"])
    # the alpha x3 bug: the update folded in at three times its scale
    for module in wrong.modules():
        if isinstance(getattr(module, "scaling", None), dict):
            module.scaling = {k: 3 * v for k, v in module.scaling.items()}
    gap = deploy.merge_gap(adapter, wrong.merge_and_unload(), tok, CONVS)
    assert gap["gap_fp64"] > 1000 * gap["floor"], gap


def test_routing_gives_each_request_its_own_adapter(model_dir, model_and_tok, two_adapters):
    _, tok = model_and_tok
    multi = deploy.multi_lora(model_dir, two_adapters)
    requests = [("one", CONVS[0]), ("two", CONVS[0]), ("two", CONVS[1]), ("one", CONVS[1])]
    routed = deploy.routed_generate(multi, tok, requests, max_new_tokens=8, batch_size=4)
    alone = {}
    for name, path in two_adapters.items():
        single = deploy.load_adapter_model(model_dir, path)
        alone[name] = deploy.routed_generate(
            single, tok, [("default", c) for c in CONVS], max_new_tokens=8
        )
    expected = [alone["one"][0], alone["two"][0], alone["two"][1], alone["one"][1]]
    assert routed == expected
    assert alone["one"] != alone["two"], (
        "the two adapters answer alike: routing would be untestable"
    )
    base_mb, one_mb = (
        align.tensor_bytes(models.load(str(model_dir))[0]) / 1e6,
        deploy.adapter_mb(multi, "one"),
    )
    assert 0 < one_mb < 5 and align.tensor_bytes(multi) / 1e6 == pytest.approx(
        base_mb + 2 * one_mb, rel=1e-3
    )


def test_int8_replaces_linears_without_warnings():
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        q = deploy.int8_dynamic(model)
    assert not [w for w in caught if "quantiz" in str(w.message)], [str(w.message) for w in caught]
    assert (
        type(q[0]).__module__.startswith("torch.ao.nn.quantized.dynamic")
        and type(model[0]) is torch.nn.Linear
    )
    assert q[0].weight().qscheme() == torch.per_channel_affine
    x = torch.randn(3, 64)
    assert (q(x) - model(x)).abs().max() < 0.1
    assert deploy.saved_mb(q) < deploy.saved_mb(model)


def test_generated_tokens_stop_at_the_end_token_and_skip_padding():
    row = torch.tensor([5, 6, 2, 2, 2])  # eos = pad = 2, as in SmolLM2
    assert deploy.generated_tokens(row, {2}, 2) == 3
    assert deploy.generated_tokens(torch.tensor([5, 6, 7]), {2}, 0) == 3


def test_throughput_arithmetic():
    row = deploy.summarise(
        {"tokens": 200, "seconds": 2.0, "latencies": [1, 2, 3, 4, 5]},
        {"tokens": 100, "seconds": 4.0},
    )
    assert row["tokens_per_s"] == 100 and row["x_naive"] == 4
    assert row["p50_s"] == 3 and row["p95_s"] == pytest.approx(4.8)
    assert deploy.cost_per_million(1000, 3.6) == pytest.approx(1.0)


def test_multi_gpu_files_parse(tmp_path):
    """scripts/deploy: the FSDP config loads in accelerate, the shell scripts parse, the recipe
    override is valid."""
    import subprocess

    from accelerate.commands.config.config_args import ClusterConfig

    from helpers import train
    from helpers.runtime import repo_root

    folder = repo_root() / "scripts" / "deploy"
    cfg = ClusterConfig.from_yaml_file(folder / "accelerate_fsdp.yaml")
    assert str(cfg.distributed_type).endswith("FSDP") and cfg.fsdp_config["fsdp_version"] == 2
    for script in (
        "train_fsdp.sh",
        "train_ddp.sh",
        "vllm_multi_lora.sh",
        "vllm_tensor_parallel.sh",
    ):
        assert subprocess.run(["bash", "-n", str(folder / script)]).returncode == 0, script
    assert "--tensor-parallel-size" in (folder / "vllm_tensor_parallel.sh").read_text()
    # train_fsdp.sh's --set load_in_4bit=false
    assert train.load_recipe(load_in_4bit=False).four_bit("cuda") is False


def test_an_int8_model_generates_in_fp32_even_where_bf16_is_the_default(model_and_tok, monkeypatch):
    """Notebook 08 crashed on an AVX512-BF16 CPU: bf16 autocast feeds bf16 activations to the
    int8 kernels."""
    from helpers import evaluate, runtime

    model, tok = model_and_tok
    monkeypatch.setenv("WORKBOOK_DTYPE", "auto")
    # as on a CPU with bf16 units
    monkeypatch.setattr(runtime, "cpu_flags", lambda: {"avx512_bf16": True})
    q = deploy.int8_dynamic(model)
    assert runtime.int8_dynamic_modules(q) > 0 and runtime.int8_dynamic_modules(model) == 0
    assert runtime.generation_dtype(model) == "bf16" and runtime.generation_dtype(q) == "fp32"
    with pytest.raises(RuntimeError, match="BFloat16"):  # what the fp32 choice avoids
        with torch.inference_mode(), runtime.autocast("bf16"):
            q.generate(
                **tok(["Hi"], return_tensors="pt"), max_new_tokens=2, pad_token_id=tok.pad_token_id
            )
    out = evaluate.generate(q, tok, CONVS, max_new_tokens=4)
    assert len(out) == 2 and all(isinstance(o, str) for o in out)
