"""Every notebook: committed clean, executed headless at CI settings in course order, outcomes
asserted."""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import re
import subprocess
import sys

import nbformat
import pytest

from helpers import align, course, data, prompts, runtime

NOTEBOOKS = course.notebooks()
NB_DIR = NOTEBOOKS[0].parent
CI = course.profile("ci")


def load_metrics(course_dir, stem):
    return json.loads((runtime.latest_run(course_dir, stem) / "metrics.json").read_text())


def outputs_text(nb_path) -> str:
    nb = nbformat.read(nb_path, as_version=4)
    return "\n".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )


def images(nb_path) -> int:
    nb = nbformat.read(nb_path, as_version=4)
    return sum(
        "image/png" in o.get("data", {})
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
    )


def copy_cell_recipe(stem: str) -> dict:
    """The `RECIPE = {...}` literal a notebook's copy-into-project cell writes out."""
    (literal,) = [
        ast.literal_eval(node.value)
        for node in ast.parse(course.recipe_source(NB_DIR / f"{stem}.ipynb")).body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "RECIPE"
    ]
    return literal


def check_01(course_dir):
    m = load_metrics(course_dir, "01_decision_check")
    b = m["baselines"]
    assert set(b) == {"zero-shot", "few-shot", "constrained"}
    assert m["n_eval"] == CI["01_decision_check"]["N_EVAL"]
    assert b["few-shot"]["json_valid"] > b["zero-shot"]["json_valid"]
    # a chatty 135M model ignores a bare format request
    assert b["zero-shot"]["json_valid"] <= 0.1
    assert b["constrained"]["json_valid"] >= 0.95  # valid by construction
    assert m["prompt_baseline_exact"] < 0.5  # ...but prompting does not fix accuracy
    assert m["roi_quoted_example"]["payback_days"] == pytest.approx(200 / 47)
    assert m["roi_with_build_and_upkeep"]["payback_days"] > 100
    if not os.environ.get("ANTHROPIC_API_KEY"):
        assert m["frontier"].startswith("not measured")
        assert m["gate_decision"] == "DO NOT TRAIN" and "tried_top_tier_model" in m["gate_failed"]
    # section 7, facts vs format: invented policies, so the bare base can only guess; the reading
    # adapter's answers about unseen policies come from the prompt (without it they fail)
    fx, ci01 = m["facts"], CI["01_decision_check"]
    assert (fx["n_policies"], fx["n_paraphrases"], fx["n_unseen"], fx["steps"]) == (
        12,
        24,
        12,
        ci01["FACT_STEPS"],
    ), fx
    acc = fx["accuracy"]
    assert set(acc) == {
        "base, no policy",
        "base, its policy in the prompt",
        "facts in the weights, no policy",
        "reading in the weights, unseen policy in the prompt",
    }, acc
    assert acc["base, no policy"] <= 0.25 and fx["reader_without_policy"] <= 0.25, fx
    assert acc["reading in the weights, unseen policy in the prompt"] > max(
        acc["base, its policy in the prompt"], fx["reader_without_policy"]
    ), fx
    assert (
        fx["recite_accuracy"] >= acc["facts in the weights, no policy"] and fx["train_seconds"] > 0
    ), fx
    assert 5 < fx["policy_tokens"] < 40 and fx["verdict"] in (
        "confirmed",
        "refuted",
        "inconclusive",
    ), fx
    text = outputs_text(course_dir / "01_decision_check.ipynb")
    assert "CPU · PEFT+TRL (Unsloth needs CUDA" in text or "CUDA ·" in text
    assert f"put the facts in the prompt' is {fx['verdict']} here" in text
    assert images(course_dir / "01_decision_check.ipynb") >= 2, (
        "static fallback plots missing (payback, baselines)"
    )


# Recall floors for notebook 02's steps; the notebook explains each one (section "Floors").
FLOORS_02 = {
    "exact_dedup": 0.95,
    "near_dedup": 0.60,
    "injection": 0.90,
    "label_audit": 0.80,
    "pii": 0.95,
}


def check_02(course_dir):
    m = load_metrics(course_dir, "02_data_curation")
    run = runtime.latest_run(course_dir, "02_data_curation")
    assert m["malformed_lines"] == m["planted_broken_lines"] and len(m["malformed_lines"]) == 10
    for step in ("exact_dedup", "near_dedup", "injection", "label_audit"):
        assert m[step]["recall"] >= FLOORS_02[step], (step, m[step])
    assert m["near_dedup"]["precision_with_twins"] >= 0.9
    assert m["injection"]["precision"] >= 0.95 and m["label_audit"]["precision"] >= 0.9
    for kind, sc in m["pii"].items():
        assert sc["recall"] >= FLOORS_02["pii"] and sc["precision"] >= 0.9, (kind, sc)
    assert set(m["pii"]) == {"name", "email", "phone", "address", "card"}
    assert m["format"]["unrepairable_dropped"] == 1.0 and m["format"]["repaired"] >= 0.95
    assert (
        m["users_in_both"] == 0 and m["contamination_after"] == 0 and m["contamination_before"] > 0
    )
    assert m["version_stable"] is True
    assert m["label_noise_left"] < 0.01 < m["label_noise_raw"]
    assert m["remaining_defects"]["pii_values_visible"] == 0
    curated = data.read_jsonl(run / "curated_train.jsonl")[0]
    ups = m["upsampling"]
    assert ups["rows_before"] == m["train_rows_before_upsampling"] and ups["rows_tagged"] > 0
    # every hard row appears `factor` times, every other row once
    assert (
        len(curated)
        == m["train_rows"]
        == (m["train_rows_before_upsampling"] + (ups["factor"] - 1) * ups["rows_tagged"])
    )
    assert (
        len(data.read_jsonl(run / "raw_train.jsonl", strict=False)[0])
        > m["train_rows_before_upsampling"]
    )
    assert len((run / "review_sample.jsonl").read_text().splitlines()) == 50
    assert m["version"] in (run / "dataset_card.md").read_text()
    assert images(course_dir / "02_data_curation.ipynb") >= 3  # sweep, balance, funnel
    # the teacher (issue 20): the stand-in's errors are known by construction, a slice it gets
    # mostly wrong and ~2% random slips elsewhere; the audit catches the slips, not the consistent
    # error (14/14 vs 1/39 on 2026-12-01)
    t = m["teacher"]
    stand_in = t["agreement"]["stand-in (offline, errors known)"]
    assert (
        stand_in["on the slice"] >= 30
        and stand_in["double-charge slice"] < 0.5 < 0.95 <= stand_in["the rest"]
    ), stand_in
    (hit_sys, n_sys), (hit_rand, n_rand) = (
        t["audit_caught"]["systematic (slice)"],
        t["audit_caught"]["random slips"],
    )
    assert n_sys >= 20 and n_rand >= 5 and hit_rand / n_rand - hit_sys / n_sys >= 0.5, t[
        "audit_caught"
    ]
    if not os.environ.get("ANTHROPIC_API_KEY"):
        assert t["claude"] == "not measured: ANTHROPIC_API_KEY is not set"


def check_03(course_dir):
    m = load_metrics(course_dir, "03_lora_math")
    # within this run's own fp32 rounding floor (the layer against itself in float64), not one
    # machine's numbers
    floor = m["fp32_rounding_floor"]
    assert m["max_abs_diff_vs_peft"] <= 4 * floor and m["max_abs_diff_merged"] <= 4 * floor, (
        floor,
        m,
    )
    assert m["seed_4096_r16_params"] == 131_072 and abs(m["seed_4096_r16_share"] - 0.0078) < 1e-4
    assert m["peft_trainable_r16_all_linear"] == m["formula_r16_all_linear"]
    assert (
        3 <= m["all_linear_over_attention_llama8b"] <= 4
        and m["all_linear_over_attention_smollm2"] < 3
    )
    assert m["dw_loss_first_last"][1] < m["dw_loss_first_last"][0]
    assert m["energy_real"]["16"] > 3 * m["energy_random"]["16"]
    g = m["update_growth_r4_to_r64"]
    assert g["alpha=16 fixed"] < 1 < g["alpha=r"] and 0.7 < g["rsLoRA, alpha=16"] < 1.4
    assert 35 < m["memory_70b_qlora"]["weights"] < 38 and m["memory_70b_qlora"]["total"] < 48
    assert images(course_dir / "03_lora_math.ipynb") >= 3  # rank energy, alpha, slider read-out


# Learner defaults (310 steps, one epoch): measured 89.5% and 84.0% exact / 100% valid on 200
# tickets (seeds 0 and 1, AMX Xeon, 2026-12-04; 91.0% at 330 steps; runs of one recipe at 180
# steps spread 10-15 points, so the floor sits under both). The target is 90% / 99%; below
# it the full-profile check reports XFAIL, never a pass.
FULL_MEASURED_04 = 0.80
FULL_TARGET_04 = 0.90


def check_04(course_dir):
    import yaml

    from helpers import train

    m = load_metrics(course_dir, "04_qlora_training")
    run = runtime.latest_run(course_dir, "04_qlora_training")
    # the adapter handed on carries the prompt it was trained with, for notebooks 05-08
    assert prompts.adapter_prompt(run / "adapter") == train.load_recipe().system_prompt
    # the model trained with the attention runtime.attention_impl picks for this processor and dtype
    env = m["environment"]
    if env["backend"] == "PEFT+TRL":
        assert m["attention"] == runtime.attention_impl(env["device"], env["dtype"]), m["attention"]
        # compile: auto compiled every decoder layer for the run on a CPU in fp32, none in bf16
        compiles = train.load_recipe(**m["recipe_changes"]).compiles(env["device"], env["dtype"])
        layers = json.loads((run / "merged" / "config.json").read_text())["num_hidden_layers"]
        assert m["compiled_layers"] == (layers if compiles else 0), (m["compiled_layers"], env)
    assert m["nf4_levels_vs_bnb"] < 1e-6 and m["nf4_roundtrip_vs_bnb"] < 1e-5
    e = m["quant_errors"]
    assert (
        e["NF4"]["rel_error"] < e["int4"]["rel_error"]
        and e["NF4"]["rel_error"] < e["FP4"]["rel_error"]
    )
    assert abs(m["double_quant_saving_bits"] - 0.373) < 0.002
    assert 0 < m["loss_token_share"] < 0.6
    after, few = m["after"], m["before"]["few-shot"]
    # issue 18's floor for CI's half epoch (155 steps) on 50 held-out tickets. Script runs of this
    # recipe on the Zen 5 EPYC (2026-12-07) scored 90, 78, 90, 88 and 84% / 100% valid in bf16
    # (seeds 0-4) and 90% / 100% in fp32 (seed 0); on all 200 tickets 77.5-89.0%. CI's old 80
    # steps scored 72-82% there and 64-66% in other seeds, so the floor sat at 64% / 94% (LEDGER,
    # "CI's floor in fp32" and "Half an epoch for CI"). About two sd under the six runs' mean
    # (86.7%): a broken recipe, template or schema fails
    assert m["n_eval"] == 50 or m["recipe"]["steps"] >= 100
    assert after["json_valid"] >= 0.98 and after["exact_match"] >= 0.75, after
    assert after["exact_match"] >= few["exact_match"] + 0.30, (after, few)
    # order ids: copied whenever the ticket has one, never answered null
    ids = m["order_ids"]["eval"]
    assert ids["with_id"] >= 10 and ids["accuracy"] >= 0.98 and ids["null_when_present"] == 0, ids
    # the hand-written probes are scored and the gap is recorded
    assert m["n_probes"] >= 60 and m["probes"]["json_valid"] >= 0.9, m["probes"]
    # issue 18 asks 65% of the probes of CI's adapter: the six half-epoch runs above scored
    # 69.7-80.3% (mean 74.2%; the 80-step adapter 54.5-65.2%). About three sd under their mean
    assert m["probes"]["exact_match"] >= 0.62, m["probes"]
    assert m["probe_gap"] == pytest.approx(after["exact_match"] - m["probes"]["exact_match"])
    # one recipe: the notebook trained with the YAML plus its RECIPE_CHANGES, and the Axolotl export
    # says the same
    recipe = train.load_recipe(**m["recipe_changes"], seed=m["recipe"]["seed"])
    assert m["trained_with"] == train.expected_args(recipe)
    ax = train.from_axolotl(yaml.safe_load((run / "axolotl.yaml").read_text()))
    assert ax == {k: train.expected_args(recipe)[k] for k in ax} and len(ax) >= 13
    raw = yaml.safe_load(train.RECIPE_PATH.read_text())
    assert all(m["recipe"][k] == v for k, v in raw.items() if k not in m["recipe_changes"])
    # the curve: one point per saved checkpoint plus the final model, in training order
    minutes = [p["minutes"] for p in m["curve"]]
    assert (
        len(minutes) >= 2
        and minutes == sorted(minutes)
        and m["curve"][-1]["exact_match"] == after["exact_match"]
    )
    # 6b: the running mean of the adapter's weights over every step of the last half (the final
    # step included) was scored on the same held-out tickets
    ca, last = m["weight_average"], m["curve"][-1]["step"]
    assert (
        ca["to_step"] == last
        and ca["n_steps"] == last - ca["from_step"] + 1 >= 2
        and ca["from_step"] == max(1, round(m["avg_from"] * last))
        and ca["n"] == m["n_eval"]
    ), ca
    assert (run / "adapter-averaged" / "adapter_model.safetensors").exists() and 0 <= ca[
        "exact_match"
    ] <= 1
    # the adapter notebooks 05-08 read was chosen on validation rows (the average only if it answers
    # more of them exactly), byte for byte that model, and its held-out score is that model's; the
    # final one is kept beside it
    ho, weights = m["handed_on"], (run / "adapter" / "adapter_model.safetensors").read_bytes()
    val = ho["validation_exact"]
    assert (
        ho["kind"] == ("average" if val["average"] > val["final"] else "final")
        and ho["n_validation"] >= 32
    ), ho
    assert (run / "adapter-final" / "adapter_model.safetensors").exists()
    averaged = (run / "adapter-averaged" / "adapter_model.safetensors").read_bytes()
    kept = ca if ho["kind"] == "average" else after
    assert (weights == averaged) == (ho["kind"] == "average"), ho
    assert (ho["exact_match"], ho["json_valid"]) == (kept["exact_match"], kept["json_valid"]), (
        ho,
        kept,
    )
    same, n = m["reload_identical"]
    assert m["reload_reproduces"] is True and same == n > 0, m["reload_identical"]
    assert f"checkpoint-{m['abl_steps']}" in m["checkpoints"] and len(m["checkpoints"]) >= 2
    assert (run / "adapter" / "adapter_config.json").exists() and (
        run / "merged" / "model.safetensors"
    ).exists()
    card = (run / "adapter" / "README.md").read_text()
    assert m["dataset_version"] in card and m["recipe"]["system_prompt"] in card
    # the recipe ("curated") plus each arm CI asks for, once per seed; the other base is named for
    # what it is
    arms = {k.rsplit("|", 1)[0] for k in m["ablations"]}
    asked = {
        m["other_base_arm"] if a == "other base" else a for a in CI["04_qlora_training"]["ABL_ARMS"]
    }
    assert arms == {"curated"} | asked and len(m["ablations"]) == len(arms) * len(m["abl_seeds"]), (
        sorted(m["ablations"])
    )
    # 8a: every lr x schedule x seed arm ran and was scored; the summary names the best arm and the
    # seed spread
    p04 = CI["04_qlora_training"]
    assert len(m["search"]) == len(p04["SEARCH_LRS"]) * len(p04["SEARCH_SCHEDULES"]) * len(
        p04["SEARCH_SEEDS"]
    )
    assert {(a["lr"], a["schedule"]) for a in m["search"]} == {
        (lr, s) for lr in p04["SEARCH_LRS"] for s in p04["SEARCH_SCHEDULES"]
    }
    best = max(m["search"], key=lambda a: a["exact_match"])
    assert m["search_summary"]["best"]["exact_match_mean"] >= best["exact_match"] / len(
        p04["SEARCH_SEEDS"]
    )
    assert (
        m["search_summary"]["largest_seed_spread"] >= 0
        and m["search_summary"]["steps"] == p04["SEARCH_STEPS"]
    )
    # 8b: bf16 vs fp32 measured where the processor has bf16 units, else skipped with the missing
    # flags named
    from helpers import runtime as rtm

    if rtm.compute_dtype("cpu", "auto")[0] == "bf16":
        assert m["dtype_comparison"]["speedup"] > 0 and len(
            m["dtype_comparison"]["bf16"]["exact_match"]
        ) == len(m["abl_seeds"])
    else:
        assert "no bf16 units" in m["dtype_comparison"]["skipped"] and m["dtype"] == "fp32"
    assert m["epochs"] == pytest.approx(
        m["recipe"]["steps"] * m["recipe"]["batch"] / m["train_rows"]
    )
    assert all("exact_match" in v and "json_valid" in v for v in m["ablations"].values())
    tokens = m["prompt_tokens_per_row"]
    assert tokens["label list"] > tokens["one-line (the recipe)"] + 40
    assert (
        m["train"]["tokens_per_s"] > 0
        and m["train"]["train_loss"][-1][1] < m["train"]["train_loss"][0][1]
    )
    text = outputs_text(course_dir / "04_qlora_training.ipynb")
    assert "TRAINED ON:" in text and "Read:" in text
    # section 8c (issue 20): a gold and a teacher-labelled student per seed, scored on held-out
    # double-charge tickets
    ci = CI["04_qlora_training"]
    assert set(m["teacher_arms"]) == {
        f"{a}|{s}" for a in ("gold labels", "teacher labels") for s in ci["ABL_SEEDS"]
    }
    assert (
        m["n_slice_eval"] == ci["N_SLICE_EVAL"]
        and 0 < m["slice_teacher_would_be_wrong"] <= m["n_slice_eval"]
    )
    # ~4%: slice + 2% slips
    assert 0.02 < m["teacher_rows_wrong"] / m["teacher_rows"] < 0.08, m["teacher_rows_wrong"]
    assert m["teacher_slice_rows_mislabelled"] > 0 and m["teacher_slice_rows_seen_est"] > 0
    for arm in m["teacher_arms"].values():
        assert 0 <= arm["slice_intent_right"] <= 1 and 0 <= arm["slice_teacher_mistake"] <= 1, arm
    # section 8d (issue 20): injections dropped vs kept with true labels, both scored clean and
    # attacked
    assert set(m["inject_arms"]) == {
        f"{a}|{s}" for a in ("dropped", "kept") for s in ci["ABL_SEEDS"]
    }
    assert (
        m["n_inject_eval"] == ci["N_ABL_EVAL"]
        and m["inject_copies"] == round(m["inject_share"] * m["train_rows"]) > 0
    )
    for key, arm in m["inject_arms"].items():
        assert all(0 <= arm[k] <= 1 for k in ("exact_match", "inj_exact", "inj_obeyed")), (key, arm)
        # an answer cannot be both right and obeyed
        assert arm["inj_exact"] + arm["inj_obeyed"] <= 1, (key, arm)
    # the summary is the mean over seeds of each arm, per field: where a clean cost lands
    for a in ("dropped", "kept"):
        for k in ("exact_match", "acc_intent", "acc_urgency", "inj_exact", "inj_obeyed"):
            vals = [m["inject_arms"][f"{a}|{s}"][k] for s in ci["ABL_SEEDS"]]
            assert m["inject_summary"][a][k] == pytest.approx(sum(vals) / len(vals)), (a, k)
    for s in ci["ABL_SEEDS"]:  # the dropped arm is section 8's curated arm, not a new training
        assert (
            m["inject_arms"][f"dropped|{s}"]["exact_match"]
            == m["ablations"][f"curated|{s}"]["exact_match"]
        )
    # section 8e (issue 20): the size and noise curves hold every arm the profile asks for, per
    # seed, with its epochs
    curve_arms = (
        [f"{n} rows" for n in ci["SIZE_ARMS"]]
        + ["all rows"]
        + [f"{r:.0%} flipped" for r in ci["NOISE_RATES"]]
        + [f"{ci['N_SMALL_SET']} rows, 5% flipped"]
    )
    assert set(m["data_arms"]) == {f"{a}|{s}" for a in curve_arms for s in ci["ABL_SEEDS"]}
    assert list(m["data_curves"]) == curve_arms
    for key, arm in m["data_arms"].items():
        assert 0 <= arm["exact_match"] <= 1, (key, arm)
        assert arm["epochs"] == pytest.approx(
            ci["ABL_STEPS"] * m["recipe"]["batch"] / arm["rows"]
        ), (key, arm)
    assert m["data_curves"]["all rows"]["rows"] == m["train_rows"]
    assert m["labels_flipped"] == {
        **{str(r): round(r * m["train_rows"]) for r in ci["NOISE_RATES"]},
        "small": round(0.05 * ci["N_SMALL_SET"]),
    }
    # the copy-into-project cell carries the recipe's values, written in
    literal = copy_cell_recipe("04_qlora_training")
    assert all(literal[k] == raw[k] for k in literal), literal
    if m["recipe"]["steps"] >= 100:  # the learner's full profile
        assert after["exact_match"] >= FULL_MEASURED_04 and after["json_valid"] >= 0.97, after
        if after["exact_match"] < FULL_TARGET_04 or after["json_valid"] < 0.99:
            pytest.xfail(
                f"issue 7's learner target (>= 90% exact, >= 99% valid) not reached: {after}"
            )


def check_05(course_dir):
    m = load_metrics(course_dir, "05_dpo_and_siblings")
    ci = CI["05_dpo_and_siblings"]
    # bad preference rows name the file, the line and the field
    assert "bad_pairs.jsonl:2: field 'rejected'" in m["bad_pair_error"]
    # GRPO starts from notebook 04's triage adapter (the reply stages train an adapter of their
    # own), so its starting point writes valid JSON
    assert m["triage_nb04_adapter"]["json_valid"] >= 0.95, m["triage_nb04_adapter"]
    # the reference model: a copied adapter costs megabytes, a second model copy the whole model
    ref = m["ref_memory"]
    assert ref["PeftModel (ref adapter)"]["adapters"] == ["default", "ref"]
    extra_adapter = (
        ref["PeftModel (ref adapter)"]["tensor_MB"] - ref["peft_config (adapter off)"]["tensor_MB"]
    )
    extra_copy = (
        ref["second model copy"]["tensor_MB"] - ref["peft_config (adapter off)"]["tensor_MB"]
    )
    assert 1 < extra_adapter < 50 and extra_copy > 500, ref
    # DPO: margin and preference accuracy rise over training
    dpo = m["dpo"]
    # one recipe: the notebook trained with the YAML files plus the profile's changes, and the
    # copy-into-project cell writes out the same DPO values
    recipes = {k: align.load_recipe(k, **ci[f"{k.upper()}_CHANGES"]) for k in ("dpo", "grpo")}
    assert m["recipes"]["dpo"] == json.loads(json.dumps(dataclasses.asdict(recipes["dpo"])))
    assert m["recipes"]["grpo"] == json.loads(json.dumps(dataclasses.asdict(recipes["grpo"])))
    assert (dpo["lr"], dpo["beta"]) == (recipes["dpo"].lr, recipes["dpo"].beta)
    literal = copy_cell_recipe("05_dpo_and_siblings")
    yaml_dpo = align.load_recipe("dpo")
    assert {k: getattr(yaml_dpo, k) for k in literal} == {
        k: tuple(v) if isinstance(v, list) else v for k, v in literal.items()
    }, literal
    assert dpo["steps"] == recipes["dpo"].steps
    assert dpo["margin_first_last"][1] > dpo["margin_first_last"][0], dpo["margin_first_last"]
    assert dpo["accuracy_first_last"][1] > dpo["accuracy_first_last"][0], dpo["accuracy_first_last"]
    if not os.environ.get("ANTHROPIC_API_KEY"):
        assert m["claude_judge"].startswith("not measured")
    # lr / beta: every arm recorded; a higher beta stays closer to the reference
    assert len(m["sweep"]) == 1 + len(ci["SWEEP_LRS"]) + len(ci["SWEEP_BETAS"])
    # CI runs one beta (the comparison is None, not a made-up False); the direction shows with a
    # budget of steps
    assert (m["higher_beta_closer"] is None) == (len(m["beta_drift"]) == 1), m["beta_drift"]
    if m["sweep_steps"] >= 20 and len(m["beta_drift"]) > 1:
        assert m["higher_beta_closer"] is True, m["beta_drift"]
    lr_margin = {float(k): v for k, v in m["lr_margin"].items()}
    # a bigger lr moves the margin more
    assert lr_margin[max(lr_margin)] > lr_margin[min(lr_margin)] > 0, lr_margin
    # the siblings complete at the same budget and record their numbers
    assert set(m["siblings"]) == {"DPO", "SFT (stage 1, batch 8)", *ci["SIBLINGS"]}, sorted(
        m["siblings"]
    )
    for name in ci["SIBLINGS"]:
        row = m["siblings"][name]
        assert row["steps"] == ci["SIBLING_STEPS"] and row["s_per_step"] > 0, (name, row)
        assert 0 <= row["reply_win_rate_vs_SFT"] <= 1 and 0 <= row["next_step"] <= 1, (name, row)
    assert m["dpo_over_sft_step"] > 1.0
    # noisy preferences: each of NOISE_METHODS clean and with a quarter of the pairs flipped, on the
    # same held-out pairs (CI's profile passes none: at one step a arm they show nothing; the
    # learner's run has DPO and IPO)
    nz = m["noise"]
    assert (
        nz["flipped"] == round(nz["share"] * m["n_pairs"]) > 0 and nz["steps"] == ci["SWEEP_STEPS"]
    )
    assert nz["methods"] == ci["NOISE_METHODS"], nz["methods"]
    assert nz["draws"] == ci.get("N_NOISE_DRAWS", 1), nz["draws"]
    flipped = [f"{nz['share']:.0%} flipped #{k}" for k in range(nz["draws"])]
    assert set(nz["arms"]) == {f"{meth} {d}" for meth in nz["methods"] for d in ["clean", *flipped]}
    for meth in nz["methods"]:
        # one cost and one kept share per draw
        assert len(nz["cost"][meth]) == len(nz["margin_kept"][meth]) == nz["draws"], meth
    assert set(nz["verdict"]) == (
        {"DPO", "plain DPO"} & set(nz["methods"]) if "IPO" in nz["methods"] else set()
    )
    for name, arm in nz["arms"].items():
        assert 0 <= arm["heldout_pref_accuracy"] <= 1, (name, arm)
    if "DPO" in nz["methods"]:
        assert (
            nz["arms"]["DPO clean"]["heldout_pref_accuracy"]
            == m["sweep"][f"lr={m['dpo']['lr']:g}, beta={m['dpo']['beta']:g}"][
                "heldout_pref_accuracy"
            ]
        )
    # GRPO: the recipe as recorded; from the bare base the groups have no spread
    g = m["grpo"]
    assert g["steps"] == recipes["grpo"].steps
    assert (g["lr"], g["prompts_per_step"], g["num_generations"]) == (
        recipes["grpo"].lr,
        recipes["grpo"].prompts,
        recipes["grpo"].num_generations,
    )
    # the pre-flight: every candidate sampled, the band is the tickets it got right sometimes but
    # not always
    pf, k = g["preflight"], g["num_generations"]
    assert pf["candidates"] == ci["N_GRPO_CANDIDATES"] == sum(pf["right_counts"].values()), pf
    assert pf["band"] == sum(n for c, n in pf["right_counts"].items() if 0 < int(c) < k) > 0, pf
    assert pf["zero_spread_share_before"] == pytest.approx(1 - pf["band"] / pf["candidates"]), pf
    assert sum(pf["band_gold_urgency"].values()) == pf["band"], pf  # every band ticket's label
    # the balanced band: as many tickets of each gold urgency the band holds, none made up
    trained = pf["trained_gold_urgency"]
    assert pf["balanced"] is ci.get("BALANCE_BAND", True), pf
    assert sum(trained.values()) == pf["trained_on"], pf
    assert set(trained) == set(pf["band_gold_urgency"]), pf
    assert all(trained[u] <= pf["band_gold_urgency"][u] for u in trained), pf
    if pf["balanced"]:
        assert len(set(trained.values())) == 1, pf
    assert g["fixed_set_size"] == min(
        pf["trained_on"], recipes["grpo"].steps * g["prompts_per_step"]
    ), g
    # GRPO raised the probability of the gold answer on the tickets it trained on (teacher-forced,
    # no sampling noise). Three GRPO seeds from one CI-size adapter: +0.017 to +0.044 nats
    ga = g["gold_answer"]
    assert all(len(ga[p][w]["logps"]) == g["fixed_set_size"] for p in ga for w in ga[p]), ga
    assert ga["trained"]["after"]["mean_logp"] > ga["trained"]["before"]["mean_logp"], ga
    # issue 19: GRPO does no harm; a drop of at most 6 points, on all 200 held-out tickets (12
    # tickets). Three GRPO seeds from one CI adapter moved the first 50 by -8, -4 and +4 points and
    # all 200 by -4, 0 and 0 (LEDGER, "GRPO at CI"), so 50 tickets left a pass to chance
    assert g["report"]["GRPO"]["exact_match"] >= g["report"]["SFT"]["exact_match"] - 0.06 - 1e-9, g[
        "report"
    ]
    # the arms ran at the same budget against the main run's checkpoint; a KL arm logs its KL
    assert set(g["arms"]) == {"main (loss dapo, beta 0)", *ci["GRPO_ARMS"]}, g["arms"]
    for spec, arm in g["arms"].items():
        assert 0 <= arm["exact_match"] <= 1 and 0 <= arm["json_valid"] <= 1, (spec, arm)
        if spec.startswith("beta "):
            assert arm["kl_last"] is not None and arm["kl_last"] >= 0, (spec, arm)
    bare = [v for _, v in g["bare_frac_reward_zero_std"]]
    assert sum(bare) / len(bare) >= 0.9, bare
    for name in ("SFT", "GRPO"):
        rep = g["report"][name]
        assert rep["pass@1"] <= rep[f"pass@{4}"] and "probes_exact" in rep, rep
    # DPO signals, GRPO curves, the DPO-loss slider
    assert images(course_dir / "05_dpo_and_siblings.ipynb") >= 3
    # the DPO model learned the preferences: every held-out pair's margin moved the right way on
    # average
    assert (
        dpo["heldout"]["margin_change"] > 0 and dpo["heldout"]["heldout_pref_accuracy"] >= 0.75
    ), dpo["heldout"]
    # the logs' majority flaw reaches the SFT model, and DPO on (good, flawed) pairs does not make
    # it more common
    rc = m["reply_checks"]
    assert m["log_flaw_share"]["upsell"] > 0.5 and rc["logs"]["no_upsell"] < 0.5, m[
        "log_flaw_share"
    ]
    assert rc["SFT"]["no_upsell"] < 1.0, rc  # the SFT model copied the bot's upsell
    assert rc["DPO"]["no_upsell"] >= rc["SFT"]["no_upsell"], rc
    # issue 19: DPO fixes the flaw SFT kept. Which one depends on the seed (the upsell in seed 0,
    # the missing next step in seed 1 at the learner's size), so the notebook names the SFT
    # model's weakest check; DPO raised it by 25-53 points in five runs (LEDGER, 2026-12-05)
    weak = m["sft_weakest_check"]
    assert weak["check"] == min(rc["SFT"], key=rc["SFT"].get), (weak, rc)
    assert (weak["SFT"], weak["DPO"]) == (rc["SFT"][weak["check"]], rc["DPO"][weak["check"]])
    assert weak["DPO"] - weak["SFT"] >= 0.1, (
        f"DPO moved the SFT model's weakest check {weak['check']!r} only {weak['SFT']:.0%} -> "
        f"{weak['DPO']:.0%}: stage 1 kept no flaw for DPO to fix, or DPO did not fix it"
    )
    # issue 19's target: DPO beats SFT on reply win rate, >= 58% at CI budget (14 of 24 prompts;
    # one prompt is 4 points). Since stage 1 trains at lr 1e-3, five CI-size runs from four
    # notebook-04 adapters measured 62.5-70.8% (LEDGER), so this is asserted, not XFAIL
    assert m["reply_win_rate_dpo_vs_sft"] >= 0.58, (
        f"DPO beat SFT on {m['reply_win_rate_dpo_vs_sft']:.1%} of {m['n_reply_eval']} reply "
        f"prompts (issue 19: >= 58% in CI); pass rates {rc}"
    )


def check_06(course_dir):
    m = load_metrics(course_dir, "06_decoding")
    v = m["vs_transformers"]
    assert v["all_same_kept_set"] and v["max_prob_diff"] < 1e-6 and v["configs"] >= 15, v
    b, f = m["sharpening"]["base"], m["sharpening"]["fine-tuned"]
    assert f["mean_top1"] > b["mean_top1"] and f["mean_entropy_bits"] < b["mean_entropy_bits"], (
        b,
        f,
    )
    r = m["reproducibility"]
    # the seed checks sample a reply: a sharp triager can give one JSON in every seed (2026-12-04),
    # so its count of distinct answers is recorded, not asserted
    assert r["same_seed_same_sample"] and r["t0_equals_greedy"] and r["other_seeds_differ"] >= 1, r
    temps = {row["T"] for row in m["sweep"]}
    assert temps == set(CI["06_decoding"]["TEMPS"])
    samplers = {row["sampler"] for row in m["sweep"]}
    assert samplers == {"greedy", "none", "top_p 0.9", "min_p 0.05", "min_p 0.1"}
    assert {row["model"] for row in m["sweep"]} == {"base (few-shot)", "fine-tuned"}
    assert len({row["draw"] for row in m["sweep"]}) == CI["06_decoding"]["DRAWS"]
    assert (
        m["constrained"]["base + grammar"]["json_valid"] == 1.0
        and m["constrained"]["fine-tuned + grammar"]["json_valid"] == 1.0
    )
    mon = m["monitor"]
    assert (
        0 <= mon["precision"] <= 1
        and 0 <= mon["recall"] <= 1
        and mon["n"] == 3 * CI["06_decoding"]["N_MONITOR"]
    )
    assert set(m["presets"]) == {"strict_json", "persona_chat"}
    assert (
        m["presets"]["strict_json"]["temperature"] == 0
        and m["presets"]["persona_chat"]["min_p"] == 0.05
    )
    assert set(m["repetition"]["triage"]) == {"1.0", "1.05", "1.1", "1.2", "1.3", "1.5", "2.0"}
    assert m["grammar_cost_ratio"]["fine-tuned"] > 0 and m["decode_step_ms"] > 0
    assert (runtime.latest_run(course_dir, "06_decoding") / "slider_position.pt").exists()
    assert images(course_dir / "06_decoding.ipynb") >= 3  # top-10 bars, sweep grid, slider


def check_07(course_dir):
    m = load_metrics(course_dir, "07_eval")
    run = course_dir / "07_eval"
    ci = CI["07_eval"]
    assert m["tier2"]["fine-tuned"]["exact_match"] > m["tier2"]["base"]["exact_match"]
    assert (
        0 <= m["intent_f1"]["fine-tuned"]["macro_f1"] <= 1
        and sum(map(sum, m["confusion_fine_tuned"])) == ci["N_TEST"]
    )
    assert m["contamination"]["exact"] == 0 and m["contamination"]["near_duplicates"] == 0
    assert set(m["tier3"]) == {
        "hand-written",
        "long",
        "typos_shouting",
        "mixed_language",
        "injection",
        "multiple_order_ids",
        "unseen_products",
    }
    assert all(v["n"] == ci["N_PROBE_SET"] for k, v in m["tier3"].items() if k != "hand-written")
    for side in ("base", "adapter"):  # lm-eval ran offline and produced a number for every task
        assert set(m["lm_eval"][side]) == {
            "workbook_arithmetic",
            "workbook_commonsense",
            "workbook_facts",
            "workbook_short_answer",
        }
        assert all(isinstance(v, float) and 0 <= v <= 1 for v in m["lm_eval"][side].values())
    for name, c in m["cross_check"].items():  # our scorer picks what lm-eval picks on every item
        assert c["same_pick"] == c["items"] == 36, (name, c)
    gate = m["canary_gate"]
    assert (
        gate["merged (good)"]["verdict"] == "PASS"
        and gate["alpha x3 (broken)"]["verdict"] == "BLOCK"
    ), gate
    chosen = m["chosen_checkpoint"]
    assert any(p["step"] == chosen["step"] and p["pareto"] for p in m["checkpoints"]), (
        chosen,
        m["checkpoints"],
    )
    assert set(m["arms"]) == {"triage only", "12% general mix", "notebook 04 adapter"}
    judge = m["judges"]["stand-in (local, not an LLM)"]
    assert 0 <= judge["agreement"] <= 1 and judge["position_flips"] == 0
    if not os.environ.get("ANTHROPIC_API_KEY"):
        assert m["claude_judge"].startswith("not measured")
    report = (run / "report.md").read_text()
    for section in (
        "Verdict",
        "Tier 1",
        "Tier 2",
        "Tier 3",
        "Tier 4",
        "Canary gate",
        "Judge",
        "Checkpoint",
        "Versions",
    ):
        assert f"## {section}" in report, section
    assert "SHIP" in report and "data:image/png;base64," in (run / "report.html").read_text()
    # the general-capability floor is read with its interval over the items; only a resolved loss
    # blocks shipping
    kept = m["general_retention_check"]
    assert kept["n_items"] == 36 and kept["ci95"][0] <= kept["retention"] <= kept["ci95"][1], kept
    assert kept["retention"] == pytest.approx(
        m["arms"]["notebook 04 adapter"]["general_retention"]
    ), kept
    assert m["ship"] == (
        gate["merged (good)"]["verdict"] == "PASS"
        and kept["verdict"] != "lost"
        and m["tier2"]["fine-tuned"]["exact_match"] > m["tier2"]["base"]["exact_match"]
    ), (m["ship"], kept)
    assert f"floor 95% {kept['verdict']}" in report.split("## Tier 1")[0], report[:600]


def check_08(course_dir):
    m = load_metrics(course_dir, "08_serving")
    # merged == base + adapter; the adapter is small on disk, the merged folder a whole model
    mva = m["merged_vs_adapter"]
    # bounds from this run's own fp32 rounding floor: the gap was 8.1e-05 on one processor and
    # 2.6e-03 on another
    assert mva["max_logit_diff"] == mva["gap"] and 0 < mva["floor"] < 1e-3 * mva["logit_scale"], mva
    assert mva["gap_fp64"] <= 2 * mva["floor"] and mva["gap"] <= 4 * mva["floor"], mva
    assert mva["of which the adapter, MB"]["base + adapter"] < 50 < mva["disk_MB"]["merged"], mva
    # multi-LoRA: every routed answer is its own adapter's; one base + 2 adapters < two merged
    # copies
    ml = m["multi_lora"]
    assert ml["routed_equal_single"] == ml["routed_total"] > 0, ml
    assert ml["memory_MB"]["one base + 2 adapters"] < 0.6 * ml["memory_MB"]["two merged copies"], ml
    # int8 shrinks the file; every deployment's accuracy is recorded against fp32
    q = m["quantisation"]
    assert q["merged int8 (torch.ao dynamic)"]["size_MB"] < 0.6 * q["merged fp32"]["size_MB"], q
    assert q["merged fp32"]["json_valid"] >= 0.9 and all(
        "exact_vs_fp32" in row for row in q.values()
    ), q
    # the real server: deterministic at T=0, a finish reason, usage that adds up, a stream with the
    # same text
    srv = m["server"]
    assert (
        srv["same_twice"]
        and srv["finish_reason"] in ("stop", "length")
        and srv["exit_code"] is not None
    ), srv
    u = srv["usage"]
    assert (
        u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
        and u["completion_tokens"] > 0
    ), u
    assert srv["stream"]["text"] == srv["answer"] and srv["stream"]["chunks"] >= 2, srv["stream"]
    # plain transformers serve ignores these fields with a 200 (measured); the guard refuses them
    # with a 400
    assert [r["status"] for r in m["plain_server"]["unsupported"]] == [200, 200, 200], m[
        "plain_server"
    ]["unsupported"]
    assert [r["status"] for r in m["guarded_server"]["unsupported"]] == [400, 400, 400], m[
        "guarded_server"
    ]["unsupported"]
    bad = m["guarded_server"]["bad_requests"]
    assert len(bad) == 9 and all(r["clear_4xx"] for r in bad[:-1]) and bad[-1]["status"] == 200, bad
    assert {r["request"]: r["status"] for r in bad}["a 2 MB body"] == 413, bad
    assert m["server"]["status_without_key"] == 401, m["server"]
    # T=0 consistency: the served merged model says exactly what the merged model says in process
    c = m["consistency"]
    assert c["served_vs_merged_in_process"] == 0, c
    # fp32 rounding may flip a near-tie
    assert c["mismatches_vs_peft"]["merged, in process"] <= c["n"] // 10, c
    # the health check passes at idle and flags the bad deploy as degenerate
    health = m["health"]
    assert all(not row["alerts"] for row in health[:4]), health
    assert any("degenerate" in a for a in health[-1]["alerts"]), health[-1]
    # the chat preset is honoured: a seed reproduces its reply, different seeds vary
    persona = m["persona_replies"]
    assert persona[0] == persona[3] and len(set(persona[:3])) >= 2, persona
    assert m["leftover_processes"] == [], m["leftover_processes"]
    rows = m["bench"]
    assert {"naive loop (batch 1)", "server, 1 client", "server, 4 clients"} <= set(rows), rows
    # the continuous-batching server ran exactly when the profile asked for it (CI's does not)
    continuous = [k for k in rows if k.endswith("continuous batching")]
    assert bool(continuous) == ("continuous" in CI["08_serving"]["BENCH_SERVER_BATCHING"]), rows
    # CI batches 8 requests: 2.6x beside notebook 06 and 3.3-3.5x alone; with 4 it was 1.8-1.9x
    # alone and 1.44x beside 06 and 07 (a red fresh-clone CI), too close to this bound
    batched = next(v for k, v in rows.items() if k.startswith("batched"))
    assert batched["x_naive"] > 1.5, rows


def check_learner_outputs(executed) -> None:
    """No warning (stderr) boxes in any cell; each try-it cell shows exactly one plot when
    headless."""
    cells = nbformat.read(executed, as_version=4).cells
    boxes = [
        (i, o.get("text", "")[:160])
        for i, c in enumerate(cells)
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("name") == "stderr"
    ]
    assert not boxes, f"{executed.name}: warning boxes in cells {boxes}"
    for i, c in enumerate(cells):
        if "try-it" in c.metadata.get("tags", []):
            plots = sum("image/png" in o.get("data", {}) for o in c.outputs)
            assert plots == 1, (
                f"{executed.name} cell {i}: a headless try-it cell shows {plots} plots, expected 1"
            )


CHECKS = {
    "01_decision_check": check_01,
    "02_data_curation": check_02,
    "03_lora_math": check_03,
    "04_qlora_training": check_04,
    "05_dpo_and_siblings": check_05,
    "06_decoding": check_06,
    "07_eval": check_07,
    "08_serving": check_08,
}


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_clean_with_parameters_and_recipe(nb):
    cells = nbformat.read(nb, as_version=4).cells
    code = [c for c in cells if c.cell_type == "code"]
    assert not any(c.get("outputs") or c.get("execution_count") for c in code), (
        f"{nb.name} has outputs"
    )
    assert any("parameters" in c.metadata.get("tags", []) for c in code), (
        f"{nb.name} has no parameters cell"
    )
    assert "helpers" not in course.recipe_source(nb), (
        "the copy-into-project cell must not use helpers"
    )
    assert cells[-1].metadata.get("tags") == [course.RECIPE_TAG], "the recipe cell must come last"
    assert nb.stem in CI and nb.stem in CHECKS, f"{nb.stem}: add CI parameters and outcome checks"


@pytest.mark.parametrize(
    "nb", [p for p in NOTEBOOKS if p.stem == "04_qlora_training"], ids=lambda p: p.stem
)
def test_notebook_04_scores_with_the_prompt_it_trains_with(nb):
    # RECIPE_CHANGES may set another system_prompt: a "trained" call without system= would score
    # with the recipe file's prompt instead (it did until 2026-12-05)
    code = "\n".join(
        c.source for c in nbformat.read(nb, as_version=4).cells if c.cell_type == "code"
    )
    calls = re.findall(r"evaluate_model\((?:[^()]|\([^()]*\))*\)", code)
    trained = [c for c in calls if '"trained"' in c]
    assert trained, "notebook 04 no longer scores in 'trained' mode: update this test"
    unset = [c for c in trained if "system=recipe.system_prompt" not in c]
    assert not unset, f"notebook 04 scores without the trained prompt: {unset}"


@pytest.mark.parametrize("nb", [p for p in NOTEBOOKS if p.stem >= "04"], ids=lambda p: p.stem)
def test_later_notebooks_prompt_with_the_prompt_notebook_04_trained_with(nb):
    # notebook 04 saves its prompt with the adapter; 05-08 take it from there (train.triage_adapter)
    # and not from the recipe file, which a learner's RECIPE_CHANGES may have overridden
    code = "\n".join(
        c.source for c in nbformat.read(nb, as_version=4).cells if c.cell_type == "code"
    )
    if nb.stem.startswith("04"):
        assert "prompts.save_trained_prompt(adapter_dir, recipe.system_prompt)" in code
        return
    assert "train.triage_adapter(" in code, f"{nb.stem} no longer finds notebook 04's adapter"
    assert "load_recipe().system_prompt" not in code, (
        f"{nb.stem} prompts with the recipe file's prompt; use sft04.system_prompt"
    )


@pytest.mark.notebook
@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_and_reaches_its_outcomes(nb, course_dir):
    course.execute(nb, course_dir, CI[nb.stem])
    check_learner_outputs(course_dir / nb.name)  # first: a check below may end in XFAIL
    metrics = course.read_metrics(course_dir, nb)
    blank = [
        label for label, path, _ in course.HEADLINES[nb.stem] if course.dig(metrics, path) is None
    ]
    assert not blank, f"make course's summary would print '-' for {blank}: no such metrics path"
    CHECKS[nb.stem](course_dir)


@pytest.mark.notebook
def test_unsloth_path(course_dir):
    """The GPU path is real code: report it as skipped (never passed) when it could not run here."""
    mfile = course_dir / "04_qlora_training" / "metrics.json"
    if not mfile.exists():
        pytest.skip("notebook 04 did not run in this session")
    status = json.loads(mfile.read_text())["unsloth"]
    if status.startswith("skipped"):
        pytest.skip(f"Unsloth path not exercised: {status}")
    assert status == "ran"


@pytest.mark.notebook
def test_vllm_path(course_dir):
    """Notebook 08's vLLM multi-LoRA cells: reported as skipped (never passed) without CUDA."""
    mfile = course_dir / "08_serving" / "metrics.json"
    if not mfile.exists():
        pytest.skip("notebook 08 did not run in this session")
    m = json.loads(mfile.read_text())
    if m["vllm"].startswith("skipped"):
        pytest.skip(f"vLLM path not exercised: {m['vllm']}")
    assert (
        m["vllm"] == "ran"
        and m["consistency"]["mismatches_vs_peft"]["vLLM LoRA module 'triage'"]
        <= m["consistency"]["n"] // 10
    )


@pytest.mark.notebook
@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_recipe_cell_runs_standalone(nb, model_dir, tmp_path):
    src = (
        "import sys\nsys.modules['helpers'] = None  # prove the recipe needs no course code\n"
        + course.recipe_source(nb)
    )
    script = tmp_path / "recipe.py"
    script.write_text(src)
    env = {
        **os.environ,
        "WORKBOOK_MODEL_DIR": str(model_dir),
        "HF_HUB_OFFLINE": "1",
        # one thread in a lane beside another pytest process (scripts/run_tests.py), else two
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"),
    }
    res = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.strip(), "the recipe printed nothing"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_header_says_what_you_learn_what_it_measures_and_the_time(nb):
    """The same header in every notebook: what you will learn, what it measures, and how long it
    takes."""
    head = nbformat.read(nb, as_version=4).cells[0]
    assert head.cell_type == "markdown" and head.source.startswith(f"# {nb.name[:2]} · "), nb.name
    for part in ("**You will learn**", "**This notebook measures**", "**Time:**"):
        assert part in head.source, f"{nb.name}: the first cell lacks {part}"
    time_line = next(line for line in head.source.splitlines() if "**Time:**" in line)
    if "T4" in time_line or "4090" in time_line:  # no GPU time was measured here: it must say so
        assert "estimates, not measured" in time_line, f"{nb.name}: mark the GPU times as estimates"
