"""The linked NAS heatmap for Jupyter: click a head, see its card and its attention on a chosen example.

:class:`NASExplorer` is an ipywidgets box: the mean-NAS heatmap as a plotly ``FigureWidget`` (hover text with
each head's key numbers, :func:`nasa_lens.plots.head_card.nas_heatmap_detailed`), a drop-down of examples, and below
them the clicked head's :func:`~nasa_lens.plots.head_card.head_card` and :func:`~nasa_lens.plots.attention.show_attention` on
the chosen example. Clicking a cell calls :meth:`NASExplorer.on_click`; changing the example redraws the
attention. Both handlers are plain methods, so a test (or a script) drives the explorer without a browser::

    explorer = NASExplorer(model, examples, nas)
    explorer.select((18, 4))          # what a click on cell (layer 18, head 4) does
    explorer.card.layout.title.text   # the card of head 18.4

Needs ``ipywidgets`` and ``anywidget`` (plotly's ``FigureWidget``), both in the ``dev`` extras.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from nasa_lens.heads import Head, format_head, parse_head
from nasa_lens.plots.attention import ExampleError, pick_example, attention_figure, attention_view
from nasa_lens.plots.head_card import dla_means, head_card, nas_heatmap_detailed
from nasa_lens.prompts import PromptFormat

if TYPE_CHECKING:  # pragma: no cover
    from nasa_lens.causal import EffectSweepResult
    from nasa_lens.models import LoadedModel
    from nasa_lens.nas import NASResult

__all__ = ["NASExplorer", "linked_heatmap"]

logger = logging.getLogger(__name__)


def _widgets() -> Any:
    try:
        import ipywidgets
    except ImportError as exc:  # pragma: no cover - dev extras
        raise ImportError("the linked heatmap needs ipywidgets: pip install 'nasa-lens[dev]' (or ipywidgets anywidget)") from exc
    return ipywidgets


class NASExplorer:
    """A NAS heatmap linked to a head card and an attention view (see the module docstring).

    Attributes:
        heatmap: the ``FigureWidget`` of mean NAS (click a cell).
        card: the selected head's card (a ``FigureWidget``; None before the first selection).
        attention: the selected head's attention on :attr:`example` (a ``FigureWidget``; None before).
        head: the selected head; example: the index of the chosen example.
        widget: the ipywidgets box to display.
    """

    def __init__(
        self,
        model: LoadedModel,
        data: Sequence[Any],
        nas: NASResult,
        *,
        sweep: EffectSweepResult | None = None,
        dla: Any = None,
        fmt: PromptFormat | str | None = None,
        example: int = 0,
        head: Head | str | None = None,
        batch_size: int = 16,
    ) -> None:
        import plotly.graph_objects as go

        w = _widgets()
        self.model, self.data, self.nas, self.sweep = model, list(data), nas, sweep
        self.dla = dla_means(dla)  # per-head means, once (a click then reads them)
        if len(self.data) != nas.n:
            raise ExampleError(f"the NAS result has {nas.n} examples but data has {len(self.data)}: pass the data it was scanned on")
        self.fmt = PromptFormat.of(fmt)
        self.batch_size = batch_size
        self.head: Head | None = None
        self.example = self._index(example)
        self.heatmap = go.FigureWidget(nas_heatmap_detailed(nas, sweep, dla))
        self.heatmap.data[0].on_click(self.on_click)
        self.card: Any = None
        self.attention: Any = None
        options = [(f"{i}: {getattr(ex, 'id', i)} ({getattr(ex, 'label', '?')}) {str(getattr(ex, 'question', ex))[:60]}", i)
                   for i, ex in enumerate(self.data)]
        self.picker = w.Dropdown(options=options, value=self.example, description="example", layout={"width": "640px"})
        self.picker.observe(self._on_pick, names="value")
        self.status = w.HTML("<i>click a cell of the heatmap to open that head</i>")
        self.details = w.VBox([])
        self.widget = w.VBox([self.heatmap, w.HBox([self.picker]), self.status, self.details])
        if head is not None:
            self.select(head)

    # ------------------------------------------------------------------ handlers

    def on_click(self, trace: Any, points: Any, state: Any = None) -> None:
        """The heatmap's click handler: ``points.xs`` / ``points.ys`` are the clicked head / layer."""
        xs, ys = list(getattr(points, "xs", []) or []), list(getattr(points, "ys", []) or [])
        if not xs or not ys:
            return
        self.select((int(ys[0]), int(xs[0])))

    def _on_pick(self, change: dict[str, Any]) -> None:
        self.set_example(change["new"])

    # ------------------------------------------------------------------ actions

    def select(self, head: Head | str) -> None:
        """Open ``head``: redraw its card and its attention on the current example."""
        import plotly.graph_objects as go

        if isinstance(head, str):
            head = parse_head(head, self.nas.n_layers, self.nas.n_heads)
        else:
            head = parse_head(format_head(tuple(head)), self.nas.n_layers, self.nas.n_heads)
        self.head = head
        self.status.value = f"<b>head {format_head(head)}</b>: card and attention on example {self.example}"
        card = head_card(self.model, self.data, head, self.sweep, self.dla, nas=self.nas, fmt=self.fmt, batch_size=self.batch_size)
        self.card = go.FigureWidget(card)
        self.attention = go.FigureWidget(self._attention_figure())
        self._layout()

    def set_example(self, example: int | str) -> None:
        """Choose the example whose attention is shown (an index or an id)."""
        self.example = self._index(example)
        if self.picker.value != self.example:
            self.picker.value = self.example  # fires _on_pick once more, which finds nothing to change
            return
        if self.head is not None:
            import plotly.graph_objects as go

            self.attention = go.FigureWidget(self._attention_figure())
            self.status.value = f"<b>head {format_head(self.head)}</b>: card and attention on example {self.example}"
            self._layout()

    def _attention_figure(self) -> Any:
        assert self.head is not None
        view = attention_view(self.model, self.data[self.example], [self.head], self.fmt)
        return attention_figure(view, mode="both", rows="nas")

    def _layout(self) -> None:
        self.details.children = tuple(x for x in (self.card, self.attention) if x is not None)

    def _index(self, example: int | str) -> int:
        ex = pick_example(self.data, example)
        for i, item in enumerate(self.data):
            if item is ex:
                return i
        raise ExampleError(f"example {example!r} is not one of the {len(self.data)} examples")

    def _ipython_display_(self) -> None:  # pragma: no cover - notebook only
        from IPython.display import display

        display(self.widget)


def linked_heatmap(model: LoadedModel, data: Sequence[Any], nas: NASResult, **kwargs: Any) -> NASExplorer:
    """A :class:`NASExplorer` (display it, or its ``.widget``, in a notebook)."""
    return NASExplorer(model, data, nas, **kwargs)
