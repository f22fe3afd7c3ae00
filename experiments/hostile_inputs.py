"""Run every bad input of docs/errors.md through the real CLI (``nasa_lens.cli.main``, in this process, on
tiny-random) and print the table rows: input, exit code, the message printed, the test that holds it.

    PYTHONPATH=$PWD python experiments/hostile_inputs.py /tmp/hostile > table.md

Two inputs cannot happen for root (who may read and write any file): an unreadable data file and an
unwritable --out folder; they are simulated (``os.access`` / ``open`` made to refuse) and marked so.
"""
from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import sys
from pathlib import Path

import torch

torch.set_num_threads(1)

from nasa_lens.cli import main  # noqa: E402
from nasa_lens.datasets import Example, write_jsonl  # noqa: E402


def run(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse
            code = int(exc.code or 0)
    text = err.getvalue()
    if "nasa-lens " not in text:
        return code, "(no error: it runs)"
    return code, "nasa-lens " + text.rsplit("nasa-lens ", 1)[1].strip()  # past any progress bar


def main_table(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    data = write_jsonl(root / "q.jsonl", [Example(f"Is {i} even?", "yes" if i % 2 == 0 else "no", f"q{i}") for i in range(8)])
    out = root / "out"
    m = ["--model", "tiny-random"]

    def ev(data_path, *extra):
        return ["eval", *m, "--data", str(data_path), "--n-boot", "10", "--out", str(out), *extra]

    (root / "F").write_text("x\n")
    gz = root / "q.jsonl.gz"
    gz.write_bytes(gzip.compress(data.read_bytes()))
    (root / "trunc.jsonl.gz").write_bytes(gzip.compress(data.read_bytes() * 20)[:60])
    (root / "bin.jsonl").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00binary")
    (root / "sur.jsonl").write_text('{"id": "q7", "question": "Is \\ud800 odd?", "label": "no"}\n')
    (root / "badlabel.jsonl").write_text('{"question": "Is 2 even?", "label": "maybe"}\n')
    (root / "badjson.jsonl").write_text('{"question": "Is 2 even?", "label": "yes"\n')
    (root / "long.jsonl").write_text(json.dumps({"id": "long-1", "question": "Is " + "very " * 1100 + "long?", "label": "yes"}) + "\n")
    from nasa_lens.datasets.core import is_test

    write_jsonl(root / "small.jsonl", [Example(f"Is {i} even?", "yes" if i % 2 == 0 else "no", f"s{i}") for i in range(40) if not is_test(f"s{i}", 0.3)][:3])

    from nasa_lens.adapters import HeadAdapter, model_shape, save_adapter
    from nasa_lens.models import load_model

    tiny = load_model("tiny-random")
    adapters = {}
    for name, change in {"ints": {"heads": [0, 1]}, "list": {"shape": [2, 4, 2, 16, 64]},
                         "float": {"shape": {"n_layers": 2.5, "n_heads": 4, "n_kv_heads": 2, "d_head": 16, "d_model": 64}}}.items():
        folder = root / f"adapter-{name}"
        save_adapter(folder, HeadAdapter([(0, 1)], shape=model_shape(tiny), base_model=tiny.name), tiny)
        meta = json.loads((folder / "adapter.json").read_text())
        meta.update(change)
        (folder / "adapter.json").write_text(json.dumps(meta))
        adapters[name] = folder

    cases = [
        ("`--out` is an existing file", ev(data)[:-2] + ["--out", str(root / "F")], "test_cli_input_errors.py::test_out_that_is_a_file_is_refused_before_any_work (all 6 commands)"),
        ("`--out` below a file", ev(data)[:-2] + ["--out", str(root / "F" / "sub")], "test_cli_input_errors.py::test_out_under_a_file_is_refused"),
        ("`--out` in a folder without write permission (simulated)", "UNWRITABLE", "test_cli_input_errors.py::test_unwritable_out_is_refused"),
        ("data file unreadable (simulated)", "UNREADABLE", "test_cli_input_errors.py::test_unreadable_data_is_input_error_even_with_v"),
        ("data file missing", ev(root / "nope.jsonl"), "test_datasets.py (existing)"),
        ("data path is a folder", ev(root), "test_library_input_errors.py::test_directory_is_not_reported_as_missing"),
        ("data file gzip-compressed (`.jsonl.gz`)", ev(gz), "test_library_input_errors.py::test_gzip_jsonl_is_read"),
        ("data file truncated gzip", ev(root / "trunc.jsonl.gz"), "test_library_input_errors.py::test_truncated_gzip_names_the_file"),
        ("data file binary (not UTF-8)", ev(root / "bin.jsonl"), "test_library_input_errors.py::test_binary_file_names_file_and_line"),
        ("lone surrogate `\"\\ud800\"` in a question", ev(root / "sur.jsonl"), "test_cli_input_errors.py::test_lone_surrogate_is_input_error"),
        ("malformed JSON line", ev(root / "badjson.jsonl"), "test_datasets.py (existing)"),
        ("bad label", ev(root / "badlabel.jsonl"), "test_cli_input_errors.py::test_data_errors_come_before_the_model_loads"),
        ("prompt longer than the context window (1,100 words, tiny-random 1,024)", ev(root / "long.jsonl"), "test_library_input_errors.py::test_prompt_longer_than_the_context_window_is_refused"),
        ("`--limit 0`", ev(data, "--limit", "0"), "test_cli_input_errors.py::test_eval_refuses_an_empty_sample"),
        ("`--split test` on a file whose examples all hash to train", ev(root / "small.jsonl", "--split", "test"), "test_cli_input_errors.py::test_eval_refuses_an_empty_sample"),
        ("`--limit` larger than the data", ev(data, "--limit", "20"), "test_datasets.py (existing)"),
        ("`--device foo`", ev(data, "--device", "foo"), "test_cli_input_errors.py::test_bad_device_on_the_command_line"),
        ("`--device cuda:7` (no GPU here)", ev(data, "--device", "cuda:7"), "test_library_input_errors.py::test_bad_or_missing_device_is_a_clear_error"),
        ("`adapter.json` with `heads` as plain ints", ev(data, "--adapter", str(adapters["ints"])), "test_cli_input_errors.py::test_malformed_adapter_json_is_input_error"),
        ("`adapter.json` with `shape` as a list", ev(data, "--adapter", str(adapters["list"])), "test_library_input_errors.py::test_malformed_adapter_json_names_file_and_field"),
        ("`adapter.json` with a non-integer shape value", ev(data, "--adapter", str(adapters["float"])), "test_library_input_errors.py::test_malformed_adapter_json_names_file_and_field"),
        ("`ablate --heads top:0`", ["ablate", *m, "--data", str(data), "--heads", "top:0", "--out", str(out)], "test_cli_input_errors.py::test_head_spec_is_refused_before_any_scan"),
        ("`finetune --heads top:0`", ["finetune", *m, "--train", str(data), "--heads", "top:0", "--out", str(out)], "test_cli_input_errors.py::test_head_spec_is_refused_before_any_scan"),
        ("a second `study` on a folder in use", "LOCKED", "test_cli_input_errors.py::test_second_study_message"),
        ("a torch failure (simulated out-of-memory `RuntimeError`)", "OOM", "test_cli_input_errors.py::test_torch_failure_is_internal_error_even_with_v"),
        ("same, with `-v`", "OOM-V", "test_cli_input_errors.py::test_torch_failure_is_internal_error_even_with_v"),
    ]
    print("| bad input | exit | message (last line of stderr) | test |")
    print("|---|---|---|---|")
    for what, argv, test in cases:
        if argv == "UNWRITABLE":
            locked = root / "locked"
            locked.mkdir(exist_ok=True)
            real = os.access
            os.access = lambda p, mode, **kw: False if Path(p) == locked else real(p, mode, **kw)  # noqa: E731
            try:
                code, msg = run(ev(data)[:-2] + ["--out", str(locked / "out")])
            finally:
                os.access = real
        elif argv == "UNREADABLE":
            import nasa_lens.datasets.core as core

            core.open = lambda *a, **k: (_ for _ in ()).throw(PermissionError(13, "Permission denied"))
            try:
                code, msg = run(ev(data))
            finally:
                del core.open
        elif argv == "LOCKED":
            from nasa_lens.io import file_lock

            (root / "study").mkdir(exist_ok=True)
            with file_lock(root / "study" / ".lock"):
                code, msg = run(["study", "--quick", *m, "--out", str(root / "study")])
        elif argv.startswith("OOM") if isinstance(argv, str) else False:
            import nasa_lens.evaluate as evaluate

            real_predict = evaluate.predict

            def oom(*a, **k):
                raise RuntimeError("CUDA out of memory. Tried to allocate 14.46 GiB")

            evaluate.predict = oom
            try:
                code, msg = run((["-v"] if argv == "OOM-V" else []) + ev(data))
            finally:
                evaluate.predict = real_predict
        else:
            code, msg = run(argv)
        msg = msg.replace(str(root), "R").replace("|", "\\|")
        print(f"| {what} | {code} | {msg if msg.startswith('(') else '`' + msg + '`'} | {test} |")


def third_pass_table(root: Path) -> None:
    """The CLI cases of issue #23 (docs/errors.md, "Third pass"); the API cases are in their tests."""
    from nasa_lens.debias.base import DEBIAS_FORMAT, DEBIAS_VERSION

    root.mkdir(parents=True, exist_ok=True)
    data = write_jsonl(root / "q.jsonl", [Example(f"Is {i} even?", "yes" if i % 2 == 0 else "no", f"q{i}") for i in range(40)])
    m, out = ["--model", "tiny-random"], str(root / "out")

    def paths(*flags):
        return ["paths", *m, "--data", str(data), *flags, "--out", out]

    def method(name, **changes):
        folder = root / name
        folder.mkdir(exist_ok=True)
        meta = {"format": DEBIAS_FORMAT, "version": DEBIAS_VERSION, "method": "steer", "base_model": "tiny-random",
                "heads": ["0.1"], "threshold": 0.5, "options": {}, "state": {"alpha": 1.0}}
        for key, value in changes.items():
            (meta["state"] if key == "alpha" else meta)[key] = value
        (folder / "method.json").write_text(json.dumps(meta))
        return ["eval", *m, "--data", str(data), "--method", str(folder), "--out", out]

    for link, target in (("loop", "loop"), ("broken", "nowhere")):
        if not (root / link).is_symlink():
            (root / link).symlink_to(root / target)
    (root / "existing").mkdir(exist_ok=True)
    (root / "cachefile").write_text("x")
    cases = [
        ("`paths --senders 1.0 --receivers 0.1`", paths("--senders", "1.0", "--receivers", "0.1")),
        ("`paths --senders 0.0 --receivers 0.0`", paths("--senders", "0.0", "--receivers", "0.0")),
        ("`paths --receivers 20.x`", paths("--receivers", "20.x")),
        ('`paths --senders ""`', paths("--senders", "")),
        ("`paths --senders 0.1,0.1`", paths("--senders", "0.1,0.1")),
        ("`paths --senders top:0`", paths("--senders", "top:0")),
        ("`eval --method MISSING_DIR`", ["eval", *m, "--data", str(data), "--method", str(root / "MISSING_DIR"), "--out", out]),
        ("`--out` through a symlink loop", ["eval", *m, "--data", str(data), "--out", str(root / "loop")]),
        ("`--out loop/sub`", ["eval", *m, "--data", str(data), "--out", str(root / "loop" / "sub")]),
        ("`--out` a broken symbolic link", ["eval", *m, "--data", str(data), "--out", str(root / "broken")]),
        ('`method.json` with `"threshold": 7.5`', method("t75", threshold=7.5)),
        ('`method.json` with `"threshold": NaN`', method("tnan", threshold=float("nan"))),
        ('`method.json` with `"threshold": "high"`', method("thigh", threshold="high")),
        ("`method.json` with a non-numeric `alpha`", method("ax", alpha="x")),
        ("`dla --top 0`", ["dla", *m, "--data", str(data), "--top", "0", "--out", out]),
        ("`report q.jsonl`", ["report", str(data)]),
        ("`report STUDY --out EXISTING_DIR`", ["report", str(root / "study"), "--out", str(root / "existing")]),
        ("`NASA_LENS_CACHE` set to a file", "CACHEFILE"),
    ]
    print("| bad input | exit | message (last line of stderr) |")
    print("|---|---|---|")
    for what, argv in cases:
        if argv == "CACHEFILE":
            before = os.environ.get("NASA_LENS_CACHE")
            os.environ["NASA_LENS_CACHE"] = str(root / "cachefile")
            try:
                code, msg = run(["eval", *m, "--data", "arithmetic", "--limit", "4", "--out", out])
            finally:
                os.environ.pop("NASA_LENS_CACHE") if before is None else os.environ.__setitem__("NASA_LENS_CACHE", before)
        else:
            code, msg = run(argv)
        msg = msg.replace(str(root), "R").replace("|", "\\|")
        print(f"| {what} | {code} | {msg if msg.startswith('(') else '`' + msg + '`'} |")


if __name__ == "__main__":
    where = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/nasa-lens-hostile")
    main_table(where)
    print()
    third_pass_table(where / "third")
