"""The de-biasing fixes, each a :class:`~nasa_lens.debias.base.DebiasMethod` registered by name.

How every fix chooses its heads and its free setting -- on the training examples only:

``base``
    Nothing (the reference row).
``threshold``
    No heads. The cut-off on ``p_yes`` that maximises balanced accuracy on the first ``fit_limit`` training
    examples (:func:`nasa_lens.debias.threshold.fit_threshold`; ties: smaller ``|pr_gap|``, then nearer 0.5).
``knockout``
    Candidates: heads ranked by mean NAS on the first ``scan_limit`` training examples (the paper's
    selection). Intervention: :class:`~nasa_lens.interventions.AttentionKnockout` ``remove`` of the "No"
    candidate, renormalised, on the query rows after the later candidate through the answer position. The
    number of heads ``k`` is chosen from ``k_grid`` by :func:`~nasa_lens.debias.base.fit_key` (balanced
    accuracy at 0.5, then ``|pr_gap|``, then fewer heads) on the first ``fit_limit`` training examples.
    The candidate positions are found in each forward pass from the token ids (the last occurrence of the
    instruction's candidate tokens), so the fix works for any caller; a row without both candidates (plain
    text) is left unedited.
``mask`` (UniBias-style)
    Candidates: heads ranked by their estimated effect of mean ablation on ``logit(Yes) - logit(No)``
    (:func:`nasa_lens.causal.attribution_effects` on the first ``sweep_limit`` training examples; the largest
    rise towards "Yes" first). Intervention: :class:`~nasa_lens.interventions.HeadAblation` ``mean`` (the
    head's mean output per position from the end over the first ``reference_limit`` training examples). ``k``
    from ``k_grid`` as for knockout.
``steer`` (ITI-style)
    For every head, ``z`` at the answer position on the first ``fit_limit`` training examples; the direction
    ``d = mean z | gold yes - mean z | gold no``. Heads ranked by the AUROC of the projection ``z . d`` in
    two-fold cross-validation on those examples (direction from one half, AUROC on the other, averaged);
    the top ``k`` are steered. Intervention: ``z[answer] += alpha * d`` for those heads; ``alpha`` chosen
    from ``alpha_grid`` (0 included: no change) by ``fit_key``.
``nasa``
    :func:`nasa_lens.finetune.train_nasa` on the top-``k`` NAS heads (``top:k``, NAS scanned on the training
    examples), ``steps`` steps, ``val_fraction`` of the training examples held out for validation (or the
    ``val`` examples given to ``fit``). With ``config`` (a whole ``NASAConfig``, as in
    :func:`~nasa_lens.debias.compare_methods`) the config's head spec and settings are used instead.
``all``
    The all-heads baseline: NASA on every head's query rows and (``train_k``) every key group's key rows.
``random`` / ``random-<fix>``
    The same procedure with the head ranking replaced by a seeded random order of all heads (``random`` is
    ``random-nasa``): the control for "do the chosen heads matter?". With ``config``, ``random`` trains
    ``random:k:seed`` (the heads :func:`nasa_lens.heads.random_heads` draws).
"""
from __future__ import annotations

from nasa_lens.debias.threshold import Base, Threshold  # noqa: I001  (registration order: the table order)
from nasa_lens.debias.heads import HeadMethod, random_variant
from nasa_lens.debias.knockout import Knockout, candidate_positions
from nasa_lens.debias.mask import Mask
from nasa_lens.debias.nasa import NASA, AllHeads
from nasa_lens.debias.steer import Steer, answer_z

__all__ = ["Base", "Threshold", "HeadMethod", "Knockout", "Mask", "Steer", "NASA", "AllHeads", "RandomNASA", "RandomKnockout",
           "RandomMask", "RandomSteer", "candidate_positions", "answer_z"]

RandomNASA = random_variant(NASA, "random")
RandomKnockout = random_variant(Knockout, "random-knockout")
RandomMask = random_variant(Mask, "random-mask")
RandomSteer = random_variant(Steer, "random-steer")
