"""helpers.train and scripts/train_sft.py: recipe, configs, Axolotl YAML, and a real 2-step run
that saves and reloads."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys

import pytest
import torch
import yaml

from helpers import data, prompts, train


def test_recipe_to_lora_and_sft_configs(tmp_path):
    recipe = train.load_recipe(rank=8, alpha=16, targets=("q_proj", "v_proj"), steps=5)
    lc = train.lora_config(recipe)
    assert lc.r == 8 and lc.lora_alpha == 16 and set(lc.target_modules) == {"q_proj", "v_proj"}
    sc = train.sft_config(recipe, tmp_path, "cpu", dtype="fp32")
    assert sc.use_cpu and not sc.bf16 and sc.max_steps == 5 and sc.optim == "adamw_torch"
    assert sc.learning_rate == recipe.lr and sc.train_sampling_strategy == train.sampler_for(recipe)
    assert sc.max_grad_norm == recipe.max_grad_norm == 1.0  # transformers' default, written out
    clipped = train.sft_config(train.load_recipe(max_grad_norm=0.3), tmp_path, "cpu", dtype="fp32")
    assert clipped.max_grad_norm == 0.3


def test_recipe_file_is_the_single_source():
    raw = yaml.safe_load(train.RECIPE_PATH.read_text())
    recipe = train.load_recipe()
    assert recipe.to_dict() == {"save_steps": [], "eval_steps": 0, "decay_steps": 0, **raw}
    assert prompts.train_system_prompt() == raw["system_prompt"]
    assert not recipe.four_bit("cpu") and recipe.four_bit("cuda")  # "auto": QLoRA on CUDA only


def scheduled_lrs(sc) -> tuple[list[float], float]:
    """The lr at each of a config's max_steps under its scheduler (no warmup), and the lr after the
    last step."""
    from transformers import get_scheduler

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=sc.learning_rate)
    sched = get_scheduler(
        sc.lr_scheduler_type,
        opt,
        num_warmup_steps=0,
        num_training_steps=sc.max_steps,
        scheduler_specific_kwargs=sc.lr_scheduler_kwargs,
    )
    lrs = []
    for _ in range(sc.max_steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs, opt.param_groups[0]["lr"]


def test_warmup_stable_decay_holds_the_lr_then_lowers_it_to_zero(tmp_path):
    """The schedule a run ends on: constant lr, then a linear fall to 0 over the last decay_steps
    (a share or a count)."""
    recipe = train.load_recipe(steps=10, scheduler="warmup_stable_decay", decay_steps=0.2)
    sc = train.sft_config(recipe, tmp_path, "cpu", dtype="fp32")
    assert sc.lr_scheduler_kwargs == {"num_decay_steps": 2, "decay_type": "linear"}
    lrs, end_lr = scheduled_lrs(sc)
    # steps 1-9 at the full lr, step 10 at half of it, and 0 where the run ends
    assert lrs[:9] == [recipe.lr] * 9 and lrs[9] == pytest.approx(recipe.lr / 2) and end_lr == 0
    assert (
        train.axolotl_config(recipe, "m", "d.jsonl")["lr_scheduler_kwargs"]["num_decay_steps"] == 2
    )
    assert (
        train.sft_config(
            train.load_recipe(steps=10, scheduler="constant"), tmp_path, "cpu", dtype="fp32"
        ).lr_scheduler_kwargs
        == {}
    )
    with pytest.raises(train.RecipeError, match=r"field 'decay_steps' must give 1\.\.10 steps"):
        train.load_recipe(steps=10, scheduler="warmup_stable_decay")
    with pytest.raises(
        train.RecipeError, match="field 'decay_steps' must be a step count or a share, got 'lots'"
    ):
        train.load_recipe(decay_steps="lots")
    # the export round-trips it
    wsd = train.load_recipe(steps=10, scheduler="warmup_stable_decay", decay_steps=3)
    assert (
        train.from_axolotl(train.axolotl_config(wsd, "m", "d.jsonl"))["lr_scheduler_kwargs"]
        == train.expected_args(wsd)["lr_scheduler_kwargs"]
        == {"num_decay_steps": 3, "decay_type": "linear"}
    )


def test_cosine_with_a_floor_ends_at_min_lr_rate_times_lr(tmp_path):
    """The recipe's schedule: a cosine from lr that ends at min_lr_rate x lr, not at 0; the trainer,
    the expected arguments and the Axolotl export all carry the floor."""
    recipe = train.load_recipe(steps=10)
    assert recipe.scheduler == train.COSINE_FLOOR and recipe.min_lr_rate == 0.1
    sc = train.sft_config(recipe, tmp_path, "cpu", dtype="fp32")
    assert sc.lr_scheduler_kwargs == {"min_lr_rate": 0.1}
    lrs, end_lr = scheduled_lrs(sc)
    # the first step at the full lr, then falling every step, down to the floor where the run ends
    assert lrs[0] == recipe.lr and all(a > b for a, b in zip(lrs, lrs[1:]))
    assert lrs[-1] > 0.1 * recipe.lr
    assert end_lr == pytest.approx(0.1 * recipe.lr)
    assert (
        train.from_axolotl(train.axolotl_config(recipe, "m", "d.jsonl"))["lr_scheduler_kwargs"]
        == train.expected_args(recipe)["lr_scheduler_kwargs"]
        == {"min_lr_rate": 0.1}
    )
    for bad in (0, 1.0, "low", True):
        with pytest.raises(
            train.RecipeError, match="^override: field 'min_lr_rate' must be a share of lr"
        ):
            train.load_recipe(min_lr_rate=bad)
    # other schedules ignore the floor
    assert train.scheduler_kwargs(train.load_recipe(scheduler="constant", min_lr_rate=0)) == {}


def test_bad_recipe_fields_are_named(tmp_path):
    with pytest.raises(train.RecipeError, match="unknown recipe field 'lrr'"):
        train.load_recipe(lrr=1e-3)
    bad = tmp_path / "r.yaml"
    bad.write_text(re.sub(r"(?m)^steps: \d+", "steps: lots", train.RECIPE_PATH.read_text()))
    with pytest.raises(train.RecipeError, match=r"r\.yaml: field 'steps' must be an integer"):
        train.load_recipe(bad)
    bad.write_text("rank: 4\n")
    with pytest.raises(train.RecipeError, match="missing recipe field"):
        train.load_recipe(bad)
    for norm in (0, -1.0, "0.3", True):
        with pytest.raises(
            train.RecipeError, match="^override: field 'max_grad_norm' must be a number above 0"
        ):
            train.load_recipe(max_grad_norm=norm)


def test_prompt_completion_puts_the_answer_in_the_completion():
    rec = data.load_split("train", 1)[0]
    pc = train.prompt_completion(rec, prompts.train_system_prompt())
    assert [m["role"] for m in pc["prompt"]] == ["system", "user"]
    assert json.loads(pc["completion"][0]["content"]) == data.gold(rec)
    assert all(i in prompts.label_list_prompt() for i in data.intents())


def test_axolotl_yaml_is_valid_and_carries_the_recipe():
    recipe = train.load_recipe(rank=32, alpha=32)
    cfg = yaml.safe_load(train.axolotl_yaml(recipe, "org/model", "data.jsonl"))
    assert cfg["lora_r"] == 32 and cfg["adapter"] == "qlora" and cfg["load_in_4bit"] is True
    assert len(cfg["lora_target_modules"]) == 7 and cfg["datasets"][0]["path"] == "data.jsonl"
    ax, expected = train.from_axolotl(cfg), train.expected_args(recipe)
    assert ax == {k: expected[k] for k in ax} and len(ax) == len(expected) - 1
    assert cfg["default_system_message"] == recipe.system_prompt


def test_model_card_names_base_and_version():
    card = train.model_card(
        "smollm2-135m", "abc123", train.load_recipe(), {"exact_match": 0.5}, "CPU · PEFT+TRL"
    )
    assert "abc123" in card and "smollm2-135m" in card and '"exact_match": 0.5' in card
    assert train.load_recipe().system_prompt in card


@pytest.mark.notebook
def test_cli_trains_saves_and_the_adapter_reloads(tmp_path, model_dir):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    res = subprocess.run(
        [
            sys.executable,
            "scripts/train_sft.py",
            "--train",
            str(data.data_dir() / "train.jsonl"),
            "--out",
            str(tmp_path),
            "--set",
            "steps=2",
            "--set",
            "batch=4",
            "--set",
            "lr=5e-4",
            "--limit",
            "8",
            "--merge",
            "--axolotl-yaml",
            str(tmp_path / "ax.yaml"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=data.data_dir().parent,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert (
        summary["final_loss"] is not None
        and (tmp_path / "adapter" / "adapter_config.json").exists()
    )
    assert (tmp_path / "merged" / "model.safetensors").exists() and (tmp_path / "ax.yaml").exists()
    # the adapter carries the prompt it was trained with (train.triage_adapter reads it)
    assert prompts.adapter_prompt(tmp_path / "adapter") == train.load_recipe().system_prompt
    # recipe agreement: what the CLI trained with, the recipe plus its overrides, and the Axolotl
    # export
    expected = train.expected_args(train.load_recipe(steps=2, batch=4, lr=5e-4))
    assert summary["trained_with"] == expected
    ax = train.from_axolotl(yaml.safe_load((tmp_path / "ax.yaml").read_text()))
    assert ax == {k: expected[k] for k in ax} and len(ax) == len(expected) - 1
    model, tok = train.merge(str(model_dir), tmp_path / "adapter")
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(134.5e6, rel=0.02)


def test_cli_reports_bad_input_in_one_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    for args, needle in (
        (["--train", str(bad)], "bad.jsonl:1: field 'messages[0].role'"),
        (
            ["--train", str(data.data_dir() / "train.jsonl"), "--set", "lrr=1"],
            "unknown recipe field 'lrr'",
        ),
    ):
        res = subprocess.run(
            [sys.executable, "scripts/train_sft.py", *args, "--out", str(tmp_path / "o")],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=data.data_dir().parent,
        )
        assert res.returncode == 2 and needle in res.stderr, res.stderr
        assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr


def test_the_recipe_module_reports_bad_input_before_the_heavy_imports():
    """Importing helpers.train (the CLI's first step) loads no transformers, peft or trl: bad
    input fails in seconds."""
    code = (
        "import sys, helpers.train; print(sorted(m for m in ('transformers', 'peft', 'trl') if m "
        "in sys.modules))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "[]", (res.stdout, res.stderr[-2000:])
    # resolved on first use
    assert train.CHECKPOINTING in ("activation_checkpointing", "gradient_checkpointing")
    assert train.SHARED_ARGS[-2] == train.CHECKPOINTING


def test_length_buckets_keeps_every_row_and_groups_lengths():
    rows = data.load_split("train", 256)
    ordered = train.length_buckets(rows, batch=8, seed=0)
    # nothing dropped or doubled
    assert sorted(r["id"] for r in ordered) == sorted(r["id"] for r in rows)
    # same seed, same order
    assert ordered == train.length_buckets(rows, batch=8, seed=0)

    def spread(seq):
        return sum(
            max(lens) - min(lens)
            for lens in (
                [len(data.ticket(r)) for r in seq[k : k + 8]] for k in range(0, len(seq), 8)
            )
        )

    assert spread(ordered) < 0.5 * spread(rows)  # batches of similar length pad less
    recipe = train.load_recipe(sampling="length_buckets")
    assert (
        train.sampler_for(recipe) == "sequential" and train.training_rows(rows, recipe) == ordered
    )


def test_length_buckets_sorts_by_a_given_length():
    # notebook 05's reply rows have no ticket: the key says what "length" is
    lengths = random.Random(1).choices(range(1, 300), k=64)
    rows = [{"prompt": "p", "completion": "x" * n} for n in lengths]
    ordered = train.length_buckets(rows, batch=8, seed=0, key=lambda r: len(r["completion"]))
    assert sorted(len(r["completion"]) for r in ordered) == sorted(lengths)

    def padded(seq):
        return sum(8 * max(len(r["completion"]) for r in seq[k : k + 8]) for k in range(0, 64, 8))

    assert padded(ordered) < 0.75 * padded(rows), (padded(ordered), padded(rows))


def tiny_llama(vocab: int, **config):
    """A 2-layer, 64-wide random Llama with the offline tokenizer's vocabulary: real code paths,
    cheap on any CPU."""
    from transformers import LlamaConfig, LlamaForCausalLM

    return LlamaForCausalLM(
        LlamaConfig(
            vocab_size=vocab,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            **config,
        )
    )


def tiny_trainer(tok, out_dir, dtype: str, **changes):
    """train.build_trainer on a seeded tiny Llama and 8 training rows, the recipe at batch 2 and
    rank 4 with `changes`."""
    import torch

    torch.manual_seed(0)
    tiny = tiny_llama(len(tok), tie_word_embeddings=True)
    recipe = train.load_recipe(batch=2, rank=4, alpha=8, **changes)
    rows = train.to_dataset(data.load_split("train", 8), recipe.system_prompt)
    return train.build_trainer(tiny, tok, rows, None, recipe, out_dir, "cpu", dtype=dtype)


@pytest.mark.parametrize("dtype", ["bf16", "fp32"])
def test_dtype_switch_trains_with_fp32_adapters(tmp_path, model_dir, dtype):
    """dtype='bf16' (what runtime.compute_dtype picks on a CPU with AMX/AVX512-BF16): the base's
    matmuls run in bf16 under autocast, the LoRA weights stay fp32, the loss is finite; 'fp32'
    keeps every matmul in fp32. A tiny random Llama keeps it cheap on a CPU without bf16 units."""
    import torch
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    trainer = tiny_trainer(tok, tmp_path, dtype, steps=2)
    assert trainer.args.bf16 == (dtype == "bf16")
    seen: set = set()
    trainer.model.get_base_model().model.layers[0].mlp.down_proj.register_forward_hook(
        lambda mod, inp, out: seen.add(out.dtype)
    )
    stats = train.run(trainer)
    assert seen == {torch.bfloat16 if dtype == "bf16" else torch.float32}, seen
    trainable = [p for p in trainer.model.parameters() if p.requires_grad]
    assert trainable and all(p.dtype == torch.float32 for p in trainable)
    assert stats["train_loss"] and all(
        torch.isfinite(torch.tensor(loss)) for _, loss in stats["train_loss"]
    )


def test_compact_lm_head_on_cpu_keeps_the_loss_and_scores_only_answer_positions(
    model_dir, monkeypatch
):
    """train.compact_lm_head_on_cpu switches TRL's fused LM head to its answer-only path on CPU:
    the loss equals the model's own cross-entropy over full logits (float64 reference; TRL's
    kernel accumulates in fp32, so the bound is about 8 fp32 ulps, a dtype bound rather than one
    machine's), and padding and prompt positions never reach the head."""
    import torch
    import trl.trainer.utils as trl_utils
    from transformers import AutoTokenizer
    from trl.trainer.utils import add_fused_lm_head

    assert train.compact_lm_head_on_cpu() and trl_utils._use_triton(torch.device("cpu"))
    assert train.compact_lm_head_on_cpu()  # a second call changes nothing
    tok = AutoTokenizer.from_pretrained(model_dir)
    torch.manual_seed(0)
    tiny = tiny_llama(len(tok)).double()
    ids = torch.randint(0, len(tok), (3, 12))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0  # a padded row
    labels = ids.clone()
    labels[:, :6] = -100  # the prompt carries no loss
    labels[mask == 0] = -100
    # the reference: full logits, every position, in float64
    with torch.no_grad():
        logits = tiny(input_ids=ids, attention_mask=mask).logits[:, :-1]
    reference = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1)
    )
    rows_seen = []
    kernel = trl_utils._ChunkedLogProbFunction

    # records how many positions reach TRL's LM-head kernel
    class Counting:
        @staticmethod
        def apply(hidden, *args):
            rows_seen.append(hidden.shape[0])
            return kernel.apply(hidden, *args)

    monkeypatch.setattr(trl_utils, "_ChunkedLogProbFunction", Counting)
    add_fused_lm_head(tiny)
    out = tiny(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True)
    assert abs(out.loss.item() - reference.item()) < 1e-6 * reference.item()
    n_answer = int((labels[:, 1:] != -100).sum())
    # only the answer positions reach the head
    assert rows_seen and sum(rows_seen) == n_answer < ids.numel()


def test_two_processes_train_what_one_process_trains(tmp_path):
    """scripts/deploy/train_ddp.sh (torchrun, gloo on a CPU) at 2 x batch 4 matches one process
    at batch 8, step for step, and its adapter loads and scores. DDP averages the two halves'
    gradients, which is the same sum as one batch of 8 in another order, so the losses may differ
    only by float rounding: measured 4e-7 relative on the AVX2 EPYC (2026-12-01). Both runs are
    pinned to fp32 (WORKBOOK_DTYPE), so the rounding is fp32's on any processor, with or without
    bf16 units: the bound, 1e-4 relative, is about 840 fp32 epsilons, and far below the ~0.3 a
    step moves the loss here."""
    from transformers import AutoTokenizer

    from helpers import deploy, evaluate, models

    root = data.data_dir().parent
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHON": sys.executable, "WORKBOOK_DTYPE": "fp32"}
    common = ["--train", str(data.data_dir() / "train.jsonl"), "--limit", "64", "--set", "steps=3"]

    def summary(res):
        assert res.returncode == 0, res.stderr[-3000:]
        lines = [line for line in res.stdout.splitlines() if line.startswith('{"adapter"')]
        assert len(lines) == 1, f"expected one summary (rank 0 only), got {len(lines)}"
        return json.loads(lines[0])

    two = summary(
        subprocess.run(
            [
                "bash",
                "scripts/deploy/train_ddp.sh",
                common[1],
                str(tmp_path / "ddp"),
                "2",
                *common[2:],
                "--set",
                "batch=4",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=root,
            env=env,
        )
    )
    one = summary(
        subprocess.run(
            [
                sys.executable,
                "scripts/train_sft.py",
                *common,
                "--set",
                "batch=8",
                "--out",
                str(tmp_path / "one"),
            ],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=root,
            env=env,
        )
    )
    assert (
        two["processes"] == 2 and one["processes"] == 1 and two["dtype"] == one["dtype"] == "fp32"
    )
    assert [s for s, _ in two["train_loss"]] == [s for s, _ in one["train_loss"]] == [1, 2, 3]
    for (_, a), (_, b) in zip(two["train_loss"], one["train_loss"]):
        assert abs(a - b) <= 1e-4 * abs(b), (two["train_loss"], one["train_loss"])
    # the steps moved the loss: a real comparison
    assert one["train_loss"][-1][1] < one["train_loss"][0][1] - 0.3
    model = deploy.load_adapter_model(models.resolve(models.OFFLINE_PRESET), two["adapter"])
    # the run saved its tokenizer beside the adapter
    tok = AutoTokenizer.from_pretrained(two["adapter"])
    tok.padding_side = "left"
    outs, score = evaluate.evaluate_model(
        model, tok, data.load_split("eval", 4), "trained", desc="ddp adapter"
    )
    assert score["n"] == 4 and len(outs) == 4 and 0 <= score["json_valid"] <= 1, score


def test_triage_adapter_uses_notebook_04s_from_the_course_run(tmp_path, capsys):
    adapter = tmp_path / "course" / "04_qlora_training" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    found = train.triage_adapter("unused", tmp_path / "05", "cpu", course_dir=tmp_path / "course")
    assert (found.path, found.source, found.run04, found.stats) == (
        adapter,
        "notebook 04",
        adapter.parent,
        None,
    )
    out = capsys.readouterr().out
    assert "notebook 04's" in out
    # an adapter without a saved prompt (before 2026-12-05) is prompted with the recipe file's
    assert found.system_prompt == prompts.train_system_prompt() and "no system_prompt.txt" in out
    assert not (tmp_path / "05").exists()  # nothing trained


def test_triage_adapter_carries_the_prompt_notebook_04_trained_with(tmp_path, capsys):
    """A prompt set in notebook 04's RECIPE_CHANGES travels in the adapter folder, and every
    'trained' call of a later notebook sends it, not the recipe file's."""
    adapter = tmp_path / "course" / "04_qlora_training" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    prompts.save_trained_prompt(adapter, "Label the ticket.")
    found = train.triage_adapter("unused", tmp_path / "05", "cpu", course_dir=tmp_path / "course")
    assert found.system_prompt == "Label the ticket." != prompts.train_system_prompt()
    assert prompts.messages("t", "trained")[0]["content"] == "Label the ticket."
    assert "'Label the ticket.'" in capsys.readouterr().out
    prompts.use_trained_prompt(None)
    assert prompts.messages("t", "trained")[0]["content"] == prompts.train_system_prompt()


def test_a_saved_prompt_reads_back_and_an_empty_one_is_refused(tmp_path):
    assert prompts.adapter_prompt(tmp_path) is None
    path = prompts.save_trained_prompt(tmp_path, "Triage: JSON only.\nNo prose.")
    assert path == tmp_path / "system_prompt.txt"
    assert prompts.adapter_prompt(tmp_path) == "Triage: JSON only.\nNo prose."
    path.write_text(" \n")
    with pytest.raises(ValueError, match=r"system_prompt.txt: line 1: field 'system_prompt'"):
        prompts.adapter_prompt(tmp_path)


def test_triage_adapter_trains_a_small_one_when_04_is_missing(
    tmp_path, model_dir, monkeypatch, capsys
):
    monkeypatch.setattr(train, "find_artifact", lambda *a, **k: None)
    made = train.triage_adapter(
        str(model_dir),
        tmp_path,
        "cpu",
        steps=2,
        batch=4,
        save_steps=[1],
        eval_rows=data.load_split("eval")[:4],
        eval_steps=2,
    )
    assert made.source == "made here (2 steps)" and made.run04 is None
    assert (
        made.path == tmp_path / "sft04" / "adapter" and (made.path / "adapter_config.json").exists()
    )
    assert made.stats["steps"] == 2 and len(made.stats["eval_loss"]) == 1
    assert (tmp_path / "sft04" / "checkpoint-1").exists()
    assert "missing: training a small one now (2 steps" in capsys.readouterr().out
    # trained with the recipe's prompt, saved with it, and sent by 'trained' calls
    assert made.system_prompt == prompts.adapter_prompt(made.path) == prompts.trained_prompt()


def test_running_average_is_the_mean_of_every_step_from_start_and_saves_as_an_adapter(tmp_path):
    """The callback averages the trainable weights over the steps from `start` on, writes that
    mean as a loadable adapter, leaves the model's own weights as they were, and refuses to save
    a run that never reached `start`."""
    from types import SimpleNamespace

    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from safetensors.torch import load_file

    from helpers import train

    torch.manual_seed(0)
    model = get_peft_model(tiny_llama(32), LoraConfig(r=2, target_modules=["q_proj"]))
    lora = {n: p for n, p in model.named_parameters() if p.requires_grad}
    avg, seen = train.running_average(start=3), []
    for step in range(1, 6):
        with torch.no_grad():
            for p in lora.values():
                p.add_(torch.randn_like(p))  # an optimizer step
        if step >= 3:
            seen.append({n: p.detach().clone() for n, p in lora.items()})
        avg.on_step_end(None, SimpleNamespace(global_step=step), None, model=model)
    assert avg.steps == [3, 4, 5]
    last = {n: p.detach().clone() for n, p in lora.items()}
    out = avg.save(model, tmp_path / "swa")
    saved = load_file(str(out / "adapter_model.safetensors"))
    assert len(saved) == len(lora) > 0
    for name, p in lora.items():
        want = sum(s[name] for s in seen) / 3
        assert torch.allclose(saved[name.replace(".default", "")], want, atol=1e-6), name
        assert torch.equal(p, last[name])  # the model keeps its own final weights
    reloaded = dict(PeftModel.from_pretrained(tiny_llama(32), str(out)).named_parameters())
    for name in lora:
        want = sum(s[name] for s in seen) / 3
        assert torch.allclose(reloaded[name], want, atol=1e-6), name
    never = train.running_average(start=10)
    never.on_step_end(None, SimpleNamespace(global_step=5), None, model=model)
    with pytest.raises(ValueError, match="never reached step 10"):
        never.save(model, tmp_path / "none")


def test_step_profile_sorts_each_op_into_its_part():
    """bench/sft_step_profile.py: the body's, LoRA's and the LM head's matmuls (the head in
    vocabulary chunks) are told apart by their shapes; attention, casts, the optimizer and the
    profiler's step wrapper by name."""
    import runpy

    cat = runpy.run_path(str(data.data_dir().parent / "bench" / "sft_step_profile.py"))["category"]
    v, r = 49152, 16
    assert cat("aten::mm", [[888, 576], [576, 1536]], v, r) == "frozen-layer matmuls"
    assert cat("aten::mm", [[888, 16], [16, 576]], v, r) == "LoRA matmuls (rank 16)"
    assert cat("aten::addmm_", [[226, 576], [226, 32768], [32768, 576]], v, r) == "LM head matmuls"
    assert cat("aten::mm", [[226, 576], [576, 49152]], v, r) == "LM head matmuls"
    assert cat("aten::_scaled_dot_product_flash_attention_for_cpu", [], v, r) == "attention"
    assert cat("aten::_to_copy", [[32768, 576]], v, r) == "dtype casts and copies"
    assert cat("aten::_foreach_mul_", [], v, r) == "optimizer"
    assert cat("ProfilerStep*", [], v, r).startswith("outside any op")
    assert cat("aten::mul", [[253, 32768], []], v, r).startswith("other ops")


def test_a_set_tokenized_once_trains_the_same_from_the_cache(tmp_path, model_dir):
    """build_trainer keeps each training set as TRL tokenized it; an arm on the same rows gets
    the cached set (input_ids already there) and takes the same step to the same loss."""
    import torch
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    recipe = train.load_recipe(steps=1, batch=2, rank=4, alpha=8)
    ds = lambda: train.to_dataset(data.load_split("train", 6), recipe.system_prompt)  # noqa: E731
    train._PREPARED.clear()
    losses, sets = [], []
    for k in range(2):
        torch.manual_seed(0)
        trainer = train.build_trainer(
            tiny_llama(len(tok)), tok, ds(), None, recipe, tmp_path / str(k), "cpu", dtype="fp32"
        )
        sets.append(trainer.train_dataset)
        losses.append(train.run(trainer)["train_loss"])
    assert "input_ids" in sets[0].column_names and len(train._PREPARED) == 1
    assert losses[0] == losses[1], losses
    other = train.to_dataset(data.load_split("train", 5), recipe.system_prompt)
    assert train.prepared_key(other, tok, recipe) != train.prepared_key(ds(), tok, recipe)


def test_merge_folds_a_trained_model_in_place_as_the_saved_adapter_reloads(tmp_path, model_dir):
    """merge(trained=...) on an fp32 base gives the weights that reloading the saved adapter
    onto the base gives."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    torch.manual_seed(0)
    base_dir = tmp_path / "base"
    tiny_llama(len(tok)).save_pretrained(base_dir)
    tok.save_pretrained(base_dir)
    peft_model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32),
        LoraConfig(r=2, target_modules=["q_proj", "down_proj"]),
    )
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_()
    peft_model.save_pretrained(tmp_path / "adapter")
    from_disk = train.merge(str(base_dir), tmp_path / "adapter")[0].state_dict()
    in_place = train.merge(str(base_dir), tmp_path / "adapter", trained=peft_model)[0].state_dict()
    assert from_disk.keys() == in_place.keys()
    for k, v in from_disk.items():
        assert torch.equal(v, in_place[k]), k
    plain = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).state_dict()
    moved = [k for k, v in plain.items() if not torch.equal(v, in_place[k])]
    assert moved and all("q_proj" in k or "down_proj" in k for k in moved), moved


def test_compiled_layers_train_as_eager_ones_and_are_eager_again_after(tmp_path, model_dir):
    """train.compile_layers: every decoder layer runs compiled while trainer.train() runs (fp32
    here, where inductor's fused kernels keep the eager losses), and plain again once it ends, so
    generation after training does not compile."""
    from transformers import AutoTokenizer, TrainerCallback

    tok = AutoTokenizer.from_pretrained(model_dir)
    losses, compiled_during = {}, []
    for mode in ("eager", "compiled"):
        trainer = tiny_trainer(tok, tmp_path / mode, "fp32", steps=3, compile=mode == "compiled")
        layers = trainer.model.get_base_model().get_decoder().layers

        class Seen(TrainerCallback):
            def on_step_end(self, args, state, control, **kw):
                compiled_during.append(layers[0]._compiled_call_impl is not None)

        trainer.add_callback(Seen())
        stats = train.run(trainer)
        losses[mode] = [loss for _, loss in stats["train_loss"]]
        assert all(layer._compiled_call_impl is None for layer in layers), mode
        took = [stats["step_seconds"][1]] + [
            stats["step_seconds"][s] - stats["step_seconds"][s - 1] for s in (2, 3)
        ]
        assert stats["first_step_seconds"] == pytest.approx(took[0])
        assert stats["steady_s_per_step"] == pytest.approx((took[1] + took[2]) / 2)  # the median
        if mode == "compiled":  # the compile lands in the first step, not in the speed read-out
            assert stats["first_step_seconds"] > 3 * stats["steady_s_per_step"], stats
    assert len(losses["compiled"]) == 3
    assert losses["compiled"] == pytest.approx(losses["eager"], rel=1e-4), losses
    assert compiled_during == [False] * 3 + [True] * 3  # the eager run, then the compiled one


def test_compile_is_on_where_measured_and_a_bad_value_is_named():
    recipe = train.load_recipe(compile="auto")
    assert recipe.compiles("cpu", "fp32") and not recipe.compiles("cpu", "bf16")
    # auto: only a run long enough to earn the compile back; a 1-step or 40-step arm runs eager
    short = train.load_recipe(compile="auto", steps=train.COMPILE_MIN_STEPS - 1)
    assert not short.compiles("cpu", "fp32")
    assert train.load_recipe(compile="auto", steps=train.COMPILE_MIN_STEPS).compiles("cpu", "fp32")
    assert train.load_recipe(compile=True, steps=1).compiles("cpu", "fp32")  # asked for: on
    assert not recipe.compiles("cuda", "fp32") and not recipe.compiles("cuda", "bf16")
    assert train.load_recipe(compile=True).compiles("cpu", "bf16")  # asked for: on
    assert not train.load_recipe(compile="auto", load_in_4bit=True).compiles("cpu", "fp32")
    assert not train.load_recipe(compile=False).compiles("cpu", "fp32")
    with pytest.raises(train.RecipeError, match="override: field 'compile' must be true, false"):
        train.load_recipe(compile="yes")
