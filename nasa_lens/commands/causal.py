"""``nasa-lens ablate`` (metrics before / after ablating a head set), ``nasa-lens patch`` (per-head
activation patching on counterfactual pairs) and ``nasa-lens sweep`` (every head's ablation effect). Thin: each
handler builds its configs from the flags and calls one job of :mod:`nasa_lens.jobs.causal`."""
from __future__ import annotations

import argparse
from pathlib import Path

from nasa_lens.causal.config import AblationConfig, EffectSweepConfig, PatchingConfig
from nasa_lens.commands.common import add_data_args, add_model_args, add_out_arg, data_spec, model_spec
from nasa_lens.commands.flags import add_config_flags, config_from_args
from nasa_lens.commands.logs import progress_on
from nasa_lens.commands.tables import add_json_flag, print_table, say
from nasa_lens.jobs.causal import AblateJobConfig, PatchJobConfig, SweepJobConfig
from nasa_lens.vocab import METRICS_FILE, PATCHING_FILE, PREDICTIONS_FILE, SWEEP_EFFECTS_FILE, SWEEP_EXAMPLES_FILE


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ablate", help="metrics before and after ablating a set of heads")
    add_model_args(p)
    add_data_args(p)
    add_config_flags(p, AblationConfig)
    add_config_flags(p, AblateJobConfig)
    add_out_arg(p, "folder for metrics.json and predictions.csv")
    add_json_flag(p)
    p.set_defaults(func=_ablate)

    p = sub.add_parser("patch", help="per-head activation patching on counterfactual pairs")
    add_model_args(p)
    add_data_args(p)
    add_config_flags(p, PatchingConfig)
    add_config_flags(p, PatchJobConfig)
    add_out_arg(p, "folder for patching.csv and patching_heatmap.html/.png")
    p.set_defaults(func=_patch)

    p = sub.add_parser("sweep", help="every head's ablation effect on logit(Yes) - logit(No), exact (suffix or every position) or attribution")
    add_model_args(p)
    add_data_args(p)
    add_config_flags(p, EffectSweepConfig)
    add_config_flags(p, SweepJobConfig)
    add_out_arg(p, "folder for effects.csv, effects_by_example.csv, sweep.json and sweep_heatmap.html/.png")
    add_json_flag(p)
    p.set_defaults(func=_sweep)


def _ablate(args) -> int:
    from nasa_lens.jobs.causal import run_ablate

    cfg = config_from_args(AblationConfig, args)
    out = Path(args.out)
    result = run_ablate(cfg, out, model=model_spec(args), data=data_spec(args), job=config_from_args(AblateJobConfig, args),
                        progress=progress_on(args))
    heads = ",".join(f"{layer}.{h}" for layer, h in result.heads)
    say(args, f"ablated {len(result.heads)} heads ({result.mode}): {heads}")
    print_table(args, result.to_dataframe())
    say(args, f"wrote {out / METRICS_FILE} and {out / PREDICTIONS_FILE}")
    return 0


def _patch(args) -> int:
    from nasa_lens.jobs.causal import run_patch

    cfg = config_from_args(PatchingConfig, args)
    out = Path(args.out)
    result, written = run_patch(cfg, out, model=model_spec(args), data=data_spec(args), job=config_from_args(PatchJobConfig, args),
                                progress=progress_on(args))
    print(result.summary())
    print(f"wrote {out / PATCHING_FILE} and " + ", ".join(str(p) for p in written))
    return 0


def _sweep(args) -> int:
    from nasa_lens.jobs.causal import run_sweep

    cfg = config_from_args(EffectSweepConfig, args)
    out = Path(args.out)
    result = run_sweep(cfg, out, model=model_spec(args), data=data_spec(args), job=config_from_args(SweepJobConfig, args),
                       progress=progress_on(args))
    top = result.effects_frame().sort_values("effect_mean", ascending=False).head(10)
    say(args, f"{result.method} sweep ({result.mode}, positions {result.positions}) of {len(result.effects_frame())} heads "
              f"on {result.n} examples in {result.seconds:.1f} s; largest effects:")
    print_table(args, top)
    say(args, f"wrote {out / SWEEP_EFFECTS_FILE}, {out / SWEEP_EXAMPLES_FILE} and sweep.json")
    return 0
