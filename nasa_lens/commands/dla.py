"""``nasa-lens dla`` (direct logit attribution per head, split by the source token it reads) and
``nasa-lens paths`` (path patching: sender head -> receiver head's q/k/v, or directly). Thin: each handler
builds a validated config from its flags and calls one job (``nasa_lens.jobs_dla``)."""
from __future__ import annotations

import argparse
from pathlib import Path

from nasa_lens.commands.common import add_adapter_arg, add_data_args, add_model_args, apply_adapter_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dla",
        help="direct logit attribution of every head, split by source (via Yes / via No / other)",
        description="Each head's direct contribution to logit(Yes) - logit(No) at the answer position (final-norm "
        "scale frozen), split by the source token it reads: the instruction's Yes, its No, or the rest. Writes "
        "dla.csv, components.csv, copying.csv, per-example scores and figures.",
    )
    add_model_args(p)
    add_data_args(p)
    add_adapter_arg(p)
    p.add_argument("--nas-positions", choices=["after", "last"], default="after", help="NAS computed in the same forwards")
    p.add_argument("--top", type=int, default=10, help="heads printed and drawn (default 10)")
    p.add_argument("--no-png", action="store_true", help="write the figures as HTML only")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=_dla)

    p = sub.add_parser(
        "paths",
        help="path patching: a sender head's effect through a receiver head's q, k or v, or directly",
        description="On counterfactual pairs (candidate order swapped, or gold answer flipped), add the sender's "
        "clean-minus-corrupted output to one receiver's query/key/value input (or to the final norm) and measure "
        "the normalised change of logit(Yes) - logit(No). Writes paths.csv and a senders x receivers heatmap per input.",
    )
    add_model_args(p)
    add_data_args(p)
    add_adapter_arg(p)
    p.add_argument("--senders", default="top:4", help="L.H,L.H or top:K (most negative DLA via_no); default top:4")
    p.add_argument("--receivers", default=None, help="L.H,L.H or top:K; default every head after the first sender")
    p.add_argument("--via", default="q,k,v", help="receiver inputs, any of q,k,v (default all)")
    p.add_argument("--no-direct", action="store_true", help="skip the senders' direct paths to the logits")
    p.add_argument("--pairs", choices=["swap", "label"], default="swap", help="counterfactual pairs (default swap)")
    p.add_argument("--max-pairs", type=int, default=None, help="use at most N pairs")
    p.add_argument("--no-png", action="store_true", help="write the figures as HTML only")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=_paths)


def _common(args: argparse.Namespace) -> dict:
    return dict(data=args.data, model=args.model, limit=args.limit, seed=args.seed, split=args.split, format=args.format,
                batch_size=args.batch_size, adapter=args.adapter, device=args.device, device_map=args.device_map,
                png=not args.no_png)


def _dla(args: argparse.Namespace) -> int:
    from nasa_lens.commands.common import load_data_from_args, load_model_from_args
    from nasa_lens.jobs_dla import DLAConfig, run_dla

    cfg = DLAConfig(**_common(args), nas_positions=args.nas_positions, top_k=args.top)  # validated before loading
    model = load_model_from_args(args)
    apply_adapter_from_args(model, args)
    result = run_dla(cfg, Path(args.out), model=model, dataset=load_data_from_args(args))
    table = result.table().sort_values("via_no").head(min(cfg.top_k, result.n_layers * result.n_heads))
    print(result.summary(k=cfg.top_k))
    print(table.to_string(index=False, float_format=lambda x: f"{x:+.4f}"))
    print(f"wrote dla.csv, components.csv, copying.csv, dla_scores.* and figures in {args.out}")
    return 0


def _paths(args: argparse.Namespace) -> int:
    from nasa_lens.commands.common import load_data_from_args, load_model_from_args
    from nasa_lens.jobs_dla import PathsConfig, run_paths

    cfg = PathsConfig(**_common(args), senders=args.senders, receivers=args.receivers, via=args.via,
                      direct=not args.no_direct, pairs=args.pairs, max_pairs=args.max_pairs)
    model = load_model_from_args(args)
    apply_adapter_from_args(model, args)
    result = run_paths(cfg, Path(args.out), model=model, dataset=load_data_from_args(args))
    frame = result.to_dataframe().sort_values("normalized", key=abs, ascending=False).head(10)
    print(f"path patching, {result.kind} pairs (n={result.n}), gap {result.gap:+.3f}, {result.seconds:.0f} s")
    print(frame[["sender", "receiver", "via", "normalized", "ci_low", "ci_high"]].to_string(index=False, float_format=lambda x: f"{x:+.3f}"))
    print(f"wrote paths.csv and figures in {args.out}")
    return 0
