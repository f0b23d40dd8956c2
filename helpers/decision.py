"""Notebook 01: the should-I-fine-tune gate, the ROI/payback calculator and the 200-example rule."""

from __future__ import annotations

import math

from dataclasses import dataclass, field

VALID_REASONS = (
    "style_persona",
    "strict_format",
    "distillation",
    "private_domain",
    "latency_privacy",
)
MIN_GAIN = 0.15


@dataclass
class TaskProfile:
    """What we know about the task before training; every gate check reads one of these fields."""

    motivation: str
    has_xml_structure: bool
    n_few_shot: int
    tried_top_tier_model: bool
    is_knowledge_task: bool
    has_rag: bool
    n_eval_examples: int
    data_audited: bool
    prompt_baseline: float | None
    eval_target: float


@dataclass
class Verdict:
    """The gate's answer: 'DO NOT TRAIN', 'WARN' or 'PROCEED', with the failed checks and
    warnings."""

    decision: str
    failed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [self.decision]
        lines += [f"  fix first: {c}" for c in self.failed]
        lines += [f"  warning: {w}" for w in self.warnings]
        if self.decision == "PROCEED":
            lines.append("  start with the LoRA baseline: r=16, alpha=16, all linear projections")
        return "\n".join(lines)


def checks(t: TaskProfile) -> dict[str, bool]:
    """The six pre-training checks, each True when satisfied."""
    return {
        "prompt_optimized": t.has_xml_structure and t.n_few_shot >= 3,
        "tried_top_tier_model": t.tried_top_tier_model,
        "rag_tried_if_knowledge_task": (not t.is_knowledge_task) or t.has_rag,
        "eval_set_at_least_50": t.n_eval_examples >= 50,
        "data_audited": t.data_audited,
        "prompt_baseline_known": t.prompt_baseline is not None,
    }


def should_finetune(t: TaskProfile) -> Verdict:
    """Run the gate: any failed check means DO NOT TRAIN; a weak motivation or small gain means
    WARN."""
    failed = [name for name, ok in checks(t).items() if not ok]
    if failed:
        return Verdict("DO NOT TRAIN", failed=failed)
    warnings = []
    if t.motivation not in VALID_REASONS:
        warnings.append(
            f"motivation {t.motivation!r} is not one of {', '.join(VALID_REASONS)}; "
            "prompting or RAG usually serves it better"
        )
    gain = t.eval_target - (t.prompt_baseline or 0.0)
    if gain < MIN_GAIN:
        warnings.append(
            f"expected gain {gain:.0%} is below {MIN_GAIN:.0%}: the upkeep likely outweighs it"
        )
    return Verdict("WARN" if warnings else "PROCEED", warnings=warnings)


@dataclass
class Costs:
    """Inputs of the ROI calculator (the seeds' worked example as defaults)."""

    requests_per_day: float = 10_000
    prompted_cost_per_request: float = 0.005
    tuned_cost_per_request: float = 0.0003
    tune_cost: float = 200.0
    labelled_set_cost: float = 0.0
    maintenance_rate_per_year: float = 0.0
    engineer_cost: float = 0.0


def roi(c: Costs) -> dict[str, float]:
    """Yearly saving and payback in days; upkeep is a yearly share of the up-front build cost."""
    saving_per_day = c.requests_per_day * (c.prompted_cost_per_request - c.tuned_cost_per_request)
    upfront = c.tune_cost + c.labelled_set_cost + c.engineer_cost
    upkeep_per_year = c.maintenance_rate_per_year * upfront
    net_per_day = saving_per_day - upkeep_per_year / 365
    return {
        "prompted_per_year": c.requests_per_day * c.prompted_cost_per_request * 365,
        "tuned_per_year": c.requests_per_day * c.tuned_cost_per_request * 365,
        "gross_saving_per_year": saving_per_day * 365,
        "upfront": upfront,
        "upkeep_per_year": upkeep_per_year,
        "net_saving_per_year": net_per_day * 365,
        "payback_days": upfront / net_per_day if net_per_day > 0 else float("inf"),
    }


def slider_costs(
    requests_per_day: float,
    prompted_cost: float,
    tuned_cost: float,
    build_cost: float,
    upkeep: float,
    tune_cost: float = 200.0,
) -> Costs:
    """The payback sliders' inputs as Costs: build_cost is everything up front, including the
    tune itself."""
    return Costs(
        requests_per_day,
        prompted_cost,
        tuned_cost,
        tune_cost=tune_cost,
        labelled_set_cost=build_cost - tune_cost,
        maintenance_rate_per_year=upkeep,
    )


def payback_text(payback_days: float, horizon_days: int) -> str:
    """When the build pays back, said honestly when that is past the plotted horizon or never."""
    if math.isinf(payback_days):
        return "no payback: the upkeep eats the whole saving"
    when = f"{payback_days:,.1f} days" if payback_days < 365 else f"{payback_days / 365:,.1f} years"
    if payback_days > horizon_days:
        return f"payback after {when}, past this {horizon_days}-day chart"
    return f"payback after {when}"


def readout(c: Costs, horizon_days: int = 365) -> str:
    """One line with every number the payback sliders move."""
    r = roi(c)
    return (
        f"net saving {r['net_saving_per_year']:,.0f} USD/year · "
        f"{payback_text(r['payback_days'], horizon_days)} · "
        f"up front {r['upfront']:,.0f} USD, upkeep {r['upkeep_per_year']:,.0f} USD/year"
    )


def rule_of_200(score: float, n_eval: int, top_field_share: float) -> str:
    """The seeds' rule of thumb on a measured prompting score, with the caveats that apply."""
    systematic = top_field_share >= 0.4
    note = "" if n_eval >= 200 else f" (measured on {n_eval} examples; the rule asks for 200)"
    if score > 0.85:
        return "above 85%: fine-tuning is unlikely to close the remaining gap" + note
    if score >= 0.60:
        kind = "systematic" if systematic else "scattered"
        verdict = "worth fine-tuning" if systematic else "check the failures before training"
        return f"60-85% with {kind} failures: {verdict}" + note
    kind = "concentrated in one field" if systematic else "spread over every field"
    return (
        f"below 60% ({kind}): far below the rule's band. For a format/labelling task a small "
        "model "
        "has never seen, that is the gap fine-tuning targets; for reasoning it would be a "
        "model-size "
        "problem" + note
    )
