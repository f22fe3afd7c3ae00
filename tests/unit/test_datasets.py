"""Tests for nasa_lens.datasets: JSONL format, generators (labels recomputed independently), sampling and
splitting, the parsers of the registry packages and the shipped real datasets."""
from __future__ import annotations

import datetime as dt
import gzip
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nasa_lens.datasets import (
    DatasetError,
    Example,
    YesNoDataset,
    list_datasets,
    load_dataset,
    read_jsonl,
    sources,
    write_jsonl,
)
from nasa_lens.datasets.generators import GENERATORS

GENERATOR_NAMES = sorted(GENERATORS)
REGISTRY_NAMES = sorted(sources.REGISTRY)


@pytest.fixture(autouse=True)
def _temp_cache(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test uses a throw-away cache: the shipped datasets need none."""
    monkeypatch.setenv("NASA_LENS_CACHE", str(tmp_path / "cache"))


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# -- JSONL ---------------------------------------------------------------------------------------------------


def test_jsonl_round_trip(tmp_path: Path) -> None:
    examples = [
        Example("Is 2 + 2 equal to 4?", "yes", "a-1"),
        Example("Is the sky green?", "no", "a-2", context="Passage with ünïcode — and \"quotes\".\nTwo lines."),
        Example("Is the answer 5?", "no", "gsm8k-3-false", group="gsm8k-3"),
    ]
    path = write_jsonl(tmp_path / "sub" / "data.jsonl", examples)
    assert read_jsonl(path) == examples
    assert not list((tmp_path / "sub").glob(".*.tmp"))  # atomic write left no temp file
    ds = YesNoDataset("x", examples)
    ds.to_jsonl(tmp_path / "again.jsonl")
    assert read_jsonl(tmp_path / "again.jsonl") == examples


def test_jsonl_normalises_labels_and_ids(tmp_path: Path) -> None:
    path = _write_lines(tmp_path / "mine.jsonl", [
        json.dumps({"question": "q1", "label": True}),
        "",
        json.dumps({"question": "q2", "label": False, "id": 7}),
        json.dumps({"question": "q3", "label": " Yes ", "context": "c"}),
        json.dumps({"question": "q4", "label": "NO", "group": 12, "extra": "ignored"}),
    ])
    got = read_jsonl(path)
    assert [ex.label for ex in got] == ["yes", "no", "yes", "no"]
    assert [ex.id for ex in got] == ["mine-1", "7", "mine-4", "mine-5"]  # default id: stem + 1-based line
    assert got[2].context == "c" and got[3].group == "12"


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ('{"question": "q", "label": ', "invalid JSON"),
        ('["q", "yes"]', "expected a JSON object"),
        ('{"label": "yes"}', "question"),
        ('{"question": "  ", "label": "yes"}', "question"),
        ('{"question": "q", "label": "maybe"}', 'label must be "yes" or "no", got "maybe"'),
        ('{"question": "q", "label": 1}', "label"),
        ('{"question": "q"}', "missing label"),
        ('{"question": "q", "label": "yes", "id": [1]}', "id"),
        ('{"question": "q", "label": "yes", "context": 3}', "context"),
    ],
)
def test_jsonl_malformed_line_names_file_and_line(tmp_path: Path, line: str, fragment: str) -> None:
    path = _write_lines(tmp_path / "data.jsonl", [json.dumps({"question": "ok", "label": "no"}), "", line])
    with pytest.raises(DatasetError) as err:
        read_jsonl(path)
    message = str(err.value)
    assert "data.jsonl:3:" in message
    assert fragment in message


def test_jsonl_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "missing.jsonl"
    with pytest.raises(DatasetError, match="missing.jsonl"):
        read_jsonl(missing)
    with pytest.raises(DatasetError, match="missing.jsonl"):
        load_dataset(str(missing))


def test_jsonl_duplicate_id(tmp_path: Path) -> None:
    path = _write_lines(tmp_path / "dup.jsonl", [
        json.dumps({"id": "x", "question": "q1", "label": "yes"}),
        json.dumps({"id": "y", "question": "q2", "label": "no"}),
        json.dumps({"id": "x", "question": "q3", "label": "no"}),
    ])
    with pytest.raises(DatasetError, match=r"dup\.jsonl:3: duplicate id 'x' \(first used on line 1\)"):
        read_jsonl(path)


def test_example_validates() -> None:
    assert Example("q", True, "i").label == "yes"
    assert Example("q", "No", 3).id == "3"
    with pytest.raises(DatasetError):
        Example("q", "maybe", "i")
    with pytest.raises(DatasetError):
        Example("", "yes", "i")
    with pytest.raises(DatasetError, match="duplicate example id"):
        YesNoDataset("d", [Example("q", "yes", "i"), Example("r", "no", "i")])


# -- names and options ---------------------------------------------------------------------------------------


def test_unknown_name_lists_known_names() -> None:
    with pytest.raises(DatasetError) as err:
        load_dataset("no-such-dataset")
    message = str(err.value)
    assert "no-such-dataset" in message
    for name in GENERATOR_NAMES + REGISTRY_NAMES:
        assert name in message


def test_unknown_option_rejected() -> None:
    with pytest.raises(DatasetError, match="colour"):
        load_dataset("arithmetic", colour="red")
    with pytest.raises(DatasetError, match="difficulty"):
        load_dataset("arithmetic", difficulty=9)


def test_load_dataset_from_jsonl_path(tmp_path: Path) -> None:
    examples = [Example(f"q{i}", "yes" if i % 3 else "no", f"e{i}") for i in range(30)]
    path = write_jsonl(tmp_path / "my-set.jsonl", examples)
    ds = load_dataset(path)
    assert ds.name == "my-set" and len(ds) == 30 and set(ds.examples) == set(examples)
    assert load_dataset(str(path), seed=1).labels != ds.labels or ds.labels.count("no") in (0, 30)
    small = load_dataset(str(path), limit=7, seed=3)
    assert (small.n_yes, small.n_no) == (4, 3)


def test_load_dataset_generator_options() -> None:
    ds = load_dataset("arithmetic", n=50, difficulty=3)
    assert len(ds) == 50 and ds.n_yes == ds.n_no == 25
    assert all(ex.id.startswith("arithmetic-d3-") for ex in ds)
    assert ds.info["difficulty"] == 3
    other = load_dataset("arithmetic", n=50, difficulty=3, gen_seed=1)
    assert {ex.question for ex in ds} != {ex.question for ex in other}


def test_list_datasets() -> None:
    df = list_datasets()
    assert list(df.columns) == ["name", "kind", "count", "yes", "shipped", "cached", "licence", "source", "description"]
    assert set(df[df.kind == "generator"].name) == set(GENERATOR_NAMES)
    real = df[df.kind == "real"].set_index("name")
    assert set(real.index) == set(REGISTRY_NAMES)
    assert real.shipped.all() and set(real.cached) == {"none"}  # fresh temporary cache
    assert real.loc["strategyqa", "count"] == 2289 and real.loc["strategyqa", "yes"] == 1070
    assert real.loc["boolq", "licence"] == "CC-BY-SA-3.0" and real.loc["gsm8k-verify", "licence"] == "MIT"
    assert "bigbench==1.0.0" in real.loc["strategyqa", "source"]  # what `data fetch` would pull


def test_package_does_not_import_torch() -> None:
    code = "import sys, nasa_lens.datasets; sys.exit('torch' in sys.modules or 'transformers' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# -- generators: structure -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", GENERATOR_NAMES)
def test_generator_balance_determinism_and_ids(name: str) -> None:
    gen = GENERATORS[name]
    a = gen(400, 2, 0)
    assert len(a) == 400
    assert sum(ex.label == "yes" for ex in a) == sum(ex.label == "no" for ex in a) == 200
    assert len({ex.question for ex in a}) == 400, "questions must be unique"
    assert [ex.id for ex in a[:3]] == [f"{name}-d2-0000", f"{name}-d2-0001", f"{name}-d2-0002"]
    assert gen(400, 2, 0) == a
    assert gen(40, 2, 0) == a[:40], "a larger n extends a smaller one"
    assert [ex.question for ex in gen(40, 2, 1)] != [ex.question for ex in a[:40]]
    odd = gen(41, 2, 0)
    assert sum(ex.label == "yes" for ex in odd) == 21


@pytest.mark.parametrize("name", GENERATOR_NAMES)
def test_generator_difficulty_changes_content(name: str) -> None:
    questions = {d: [ex.question for ex in GENERATORS[name](20, d, 0)] for d in range(1, 6)}
    assert len({tuple(q) for q in questions.values()}) == 5
    assert _complexity(name, questions[5]) > _complexity(name, questions[1])


def _complexity(name: str, questions: list[str]) -> float:
    """A measure that grows with difficulty: closeness of the two dates for ``date``, else the mean count
    of digits and boolean literals."""
    if name == "lookup":  # more facts stated
        return sum(q.count(".") for q in questions) / len(questions)
    if name == "category":  # longer phrasings and same-domain distractors: count words
        return sum(len(q.split()) for q in questions) / len(questions)
    if name == "date":
        gaps = []
        for q in questions:
            a, b = (dt.datetime.strptime(s, "%B %d, %Y") for s in re.findall(r"\w+ \d+, \d+", q))
            gaps.append(abs((a - b).days))
        return -sum(gaps) / len(gaps)
    return sum(len(re.findall(r"\d|True|False", q)) for q in questions) / len(questions)


def test_generator_bad_arguments() -> None:
    with pytest.raises(DatasetError, match="difficulty"):
        GENERATORS["prime"](10, 0, 0)
    with pytest.raises(DatasetError, match="n must be"):
        GENERATORS["prime"](-1, 2, 0)


# -- generators: labels recomputed independently --------------------------------------------------------------


def _num(text: str) -> int:
    return int(text.replace(",", ""))


def _truth_arithmetic(q: str) -> bool:
    a, op, b, shown = re.fullmatch(r"Is (\d+) ([+*-]) (\d+) equal to (-?\d+)\?", q).groups()
    a, b = int(a), int(b)
    return {"+": a + b, "-": a - b, "*": a * b}[op] == int(shown)


def _truth_multistep(q: str) -> bool:
    count = int(re.match(r"\w+ has (\d+) ", q).group(1))
    for sentence in q.split(". ")[1:]:
        if m := re.search(r"buys (\d+) bags of (\d+)", sentence):
            count += int(m.group(1)) * int(m.group(2))
        elif m := re.search(r"(?:finds|gives him|gives her) (\d+)", sentence):
            count += int(m.group(1))
        elif m := re.search(r"(?:gives away|loses) (\d+)", sentence):
            count -= int(m.group(1))
    claim = int(re.search(r"have (\d+) \w+ now\?$", q).group(1))
    return count == claim


def _truth_comparison(q: str) -> bool:
    x, rel, y = re.fullmatch(r"Is ([\d,]+) (greater|less) than ([\d,]+)\?", q).groups()
    return _num(x) > _num(y) if rel == "greater" else _num(x) < _num(y)


def _truth_prime(q: str) -> bool:
    x = int(re.fullmatch(r"Is (\d+) a prime number\?", q).group(1))
    return x >= 2 and all(x % d for d in range(2, int(x**0.5) + 1))


def _truth_boolean(q: str) -> bool:
    expr = re.fullmatch(r"Is the expression (.+) true\?", q).group(1)
    assert set(re.findall(r"[A-Za-z]+", expr)) <= {"True", "False", "and", "or", "not"}
    return bool(eval(expr, {"__builtins__": {}}))  # noqa: S307 - vetted above: only literals and operators


def _truth_sorted(q: str) -> bool:
    items, order = re.fullmatch(r"Is the list \[([\d, ]+)\] sorted in (ascending|descending) order\?", q).groups()
    xs = [int(x) for x in items.split(", ")]
    return xs == sorted(xs, reverse=order == "descending")


def _truth_parity(q: str) -> bool:
    expr, parity = re.fullmatch(r"Is (?:the result of )?([\d,+* ]+) an (even|odd) number\?", q).groups()
    terms = [t.split("*") for t in expr.replace(",", "").split("+")]
    value = sum(eval_product(t) for t in terms)
    return value % 2 == (0 if parity == "even" else 1)


def eval_product(factors: list[str]) -> int:
    out = 1
    for f in factors:
        out *= int(f)
    return out


def _truth_divisibility(q: str) -> bool:
    x, d = re.fullmatch(r"Is (\d+) divisible by (\d+)\?", q).groups()
    return int(x) % int(d) == 0


def _truth_date(q: str) -> bool:
    a, rel, b = re.fullmatch(r"Did (\w+ \d+, \d+) come (before|after) (\w+ \d+, \d+)\?", q).groups()
    da, db = (dt.datetime.strptime(s, "%B %d, %Y") for s in (a, b))
    return da < db if rel == "before" else da > db


def _truth_category(q: str) -> bool:
    from nasa_lens.datasets.generators import _CATEGORIES

    m = re.fullmatch(r"(?:Is it correct to say that|Is it true that|Would you call|Is) (?:an? )?(.+?) "
                     r"(?:is )?(?:a (?:kind|type) of |an? )(.+?)\?", q)
    item, category = m.groups()
    owners = [c for c, (_, members) in _CATEGORIES.items() if item in members]
    assert len(owners) == 1, q
    return owners[0] == category


def _truth_lookup(q: str) -> bool:
    *facts, asked = re.split(r"(?<=[.?]) ", q)
    stated = {}
    for f in facts:
        who, value = re.fullmatch(r"(The secret|My secret|The winning|\w+'s secret) number is (\d+)\.", f).groups()
        stated[who.lower().replace("the ", "").replace("my ", "")] = int(value)
    who, value = re.fullmatch(r"Is (the secret|my secret|the winning|\w+'s secret) number (\d+)\?", asked).groups()
    return stated[who.lower().replace("the ", "").replace("my ", "")] == int(value)


TRUTH = {
    "category": _truth_category,
    "lookup": _truth_lookup,
    "arithmetic": _truth_arithmetic, "multistep": _truth_multistep, "comparison": _truth_comparison,
    "prime": _truth_prime, "boolean": _truth_boolean, "sorted": _truth_sorted, "parity": _truth_parity,
    "divisibility": _truth_divisibility, "date": _truth_date,
}


def test_every_generator_has_an_independent_check() -> None:
    assert set(TRUTH) == set(GENERATOR_NAMES)


@pytest.mark.parametrize("difficulty", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("name", GENERATOR_NAMES)
def test_generator_labels_are_correct(name: str, difficulty: int) -> None:
    for ex in GENERATORS[name](120, difficulty, 0):
        assert TRUTH[name](ex.question) == (ex.label == "yes"), ex


def test_arithmetic_wrong_answers_are_near_misses() -> None:
    for ex in GENERATORS["arithmetic"](200, 2, 0):
        if ex.label == "no":
            a, op, b, shown = re.fullmatch(r"Is (\d+) ([+*-]) (\d+) equal to (-?\d+)\?", ex.question).groups()
            truth = {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op]
            assert int(shown) >= 0 and _is_near_miss(int(shown), truth), ex.question


def _is_near_miss(shown: int, truth: int) -> bool:
    """Off by 1-3, off by a power of ten, two adjacent digits swapped, or one digit off by one."""
    diff = abs(shown - truth)
    if diff <= 3 or re.fullmatch(r"10*", str(diff)):
        return True
    a, b = str(shown), str(truth)
    if len(a) != len(b):
        return False
    spots = [j for j in range(len(a)) if a[j] != b[j]]
    swapped = len(spots) == 2 and spots[1] == spots[0] + 1 and a[spots[0]] == b[spots[1]] and a[spots[1]] == b[spots[0]]
    one_off = len(spots) == 1 and abs(int(a[spots[0]]) - int(b[spots[0]])) == 1
    return swapped or one_off


def test_prime_composites_get_harder() -> None:
    def smallest_factor(x: int) -> int:
        return next(d for d in range(2, x + 1) if x % d == 0)

    for difficulty, minimum in [(3, 7), (4, 11), (5, 31)]:
        for ex in GENERATORS["prime"](100, difficulty, 0):
            if ex.label == "no":
                assert smallest_factor(int(re.search(r"\d+", ex.question).group())) >= minimum


# -- balanced() and split() ----------------------------------------------------------------------------------


def _toy(n_yes: int, n_no: int) -> YesNoDataset:
    examples = [Example(f"y{i}", "yes", f"y{i}") for i in range(n_yes)]
    examples += [Example(f"n{i}", "no", f"n{i}") for i in range(n_no)]
    return YesNoDataset("toy", examples)


def test_balanced_counts_and_determinism() -> None:
    ds = _toy(30, 80)
    b = ds.balanced(20, seed=5)
    assert (len(b), b.n_yes, b.n_no) == (20, 10, 10)
    assert b.examples == ds.balanced(20, seed=5).examples
    assert b.examples != ds.balanced(20, seed=6).examples
    odd = ds.balanced(21, seed=0)
    assert (odd.n_yes, odd.n_no) == (11, 10)
    full = ds.balanced(None)
    assert (full.n_yes, full.n_no) == (30, 30)
    assert b.labels != sorted(b.labels), "order is shuffled"
    with pytest.raises(DatasetError, match="only 30 'yes'"):
        ds.balanced(62)


def test_sequence_protocol() -> None:
    ds = _toy(3, 2)
    assert isinstance(ds[0], Example) and ds[-1].id == "n1"
    sliced = ds[1:4]
    assert isinstance(sliced, YesNoDataset) and [ex.id for ex in sliced] == ["y1", "y2", "n0"]
    assert ds.labels == ["yes", "yes", "yes", "no", "no"]
    df = ds.to_dataframe()
    assert list(df.columns[:4]) == ["id", "question", "context", "label"] and len(df) == 5


def test_split_disjoint_complete_and_stable() -> None:
    ds = _toy(300, 300)
    train, test = ds.split("train"), ds.split("test")
    train_ids, test_ids = {ex.id for ex in train}, {ex.id for ex in test}
    assert not train_ids & test_ids
    assert train_ids | test_ids == {ex.id for ex in ds}
    assert 0.2 < len(test) / len(ds) < 0.4
    assert {ex.id for ex in ds.shuffled(9).split("test")} == test_ids  # independent of order
    assert {ex.id for ex in ds[:100].split("test")} == test_ids & {ex.id for ex in ds[:100]}
    assert len(ds.split("test", test_fraction=0.6)) > len(test)
    with pytest.raises(DatasetError):
        ds.split("validation")


def test_split_keeps_groups_together() -> None:
    examples = []
    for i in range(200):
        examples.append(Example(f"p{i} = {i}?", "yes", f"gsm8k-{i}-true", group=f"gsm8k-{i}"))
        examples.append(Example(f"p{i} = {i + 1}?", "no", f"gsm8k-{i}-false", group=f"gsm8k-{i}"))
    ds = YesNoDataset("pairs", examples)
    for part in ("train", "test"):
        groups = [ex.group for ex in ds.split(part)]
        assert all(groups.count(g) == 2 for g in groups)
    test_groups = {ex.group for ex in ds.split("test")}
    assert test_groups and not test_groups & {ex.group for ex in ds.split("train")}


def test_load_dataset_split_is_stable_across_seeds_and_limits() -> None:
    test_ids = {ex.id for ex in load_dataset("comparison", split="test")}
    train_ids = {ex.id for ex in load_dataset("comparison", split="train")}
    assert test_ids and train_ids and not test_ids & train_ids
    for seed in range(3):
        sample = load_dataset("comparison", split="test", limit=30, seed=seed)
        assert (sample.n_yes, sample.n_no) == (15, 15)
        assert {ex.id for ex in sample} <= test_ids
    again = load_dataset("comparison", limit=10, seed=1).examples
    assert load_dataset("comparison", limit=10, seed=1).examples == again


# -- parsers of the registry packages (the fetch path itself: tests/integration/test_data_sources.py) --------------------


def _gsm8k_record(i: int, question: str, answer: str) -> str:
    return json.dumps({"doc": {"id": i, "question": question, "answer": f"work...\n#### {answer}"}, "label": "x"})


def test_parse_gsm8k() -> None:
    records = [_gsm8k_record(0, "Ann has 3 pens. How many?", "3"), _gsm8k_record(1, "Cost?", "1,250"),
               _gsm8k_record(2, "Temperature?", "-10")]
    got = sources.parse_gsm8k(gzip.compress(("\n".join(records) + "\n").encode()))
    assert (len(got), sum(ex.label == "yes" for ex in got)) == (6, 3)
    by_id = {ex.id: ex for ex in got}
    assert by_id["gsm8k-1-true"].question == "Cost?\nIs the answer to this problem 1250?"
    assert by_id["gsm8k-1-false"].group == by_id["gsm8k-1-true"].group == "gsm8k-1"
    assert by_id["gsm8k-2-false"].question.endswith("problem -" + by_id["gsm8k-2-false"].question.split("-")[-1])
    assert by_id["gsm8k-2-false"].question != by_id["gsm8k-2-true"].question


def test_parse_strategyqa_bigbench_task() -> None:
    task = {"examples": [
        {"input": "Q: Can a pear sink?", "target_scores": {"Yes": 0, "No": 1}, "target": "No. Density."},
        {"input": "Is frost common in December?", "target_scores": {"Yes": 1, "No": 0}, "target": "Yes."},
        {"input": "Is frost common in December?", "target_scores": {"Yes": 1, "No": 0}, "target": "Yes."},
        {"input": "Would a cat bark?", "target": "No. Cats meow."},
    ]}
    got = sources.parse_strategyqa(json.dumps(task).encode())
    assert [(ex.id, ex.question, ex.label) for ex in got] == [
        ("strategyqa-0", "Can a pear sink?", "no"), ("strategyqa-1", "Is frost common in December?", "yes"),
        ("strategyqa-3", "Would a cat bark?", "no")]


def test_parse_strategyqa_train_release() -> None:
    items = [{"qid": "a1", "question": "Can a pear sink? ", "answer": False, "facts": []},
             {"qid": "b2", "question": "Is frost common in December?", "answer": True},
             {"qid": "c3", "question": "Is frost common in December?", "answer": True},
             {"qid": "d4", "question": "Is it both?", "answer": True},
             {"qid": "e5", "question": "Is it both?", "answer": False}]
    got = sources.parse_strategyqa_train(json.dumps(items).encode())
    # positions as ids, a duplicate with agreeing labels merged, one with conflicting labels dropped
    assert [(ex.id, ex.question, ex.label) for ex in got] == [
        ("strategyqa-0", "Can a pear sink?", "no"), ("strategyqa-1", "Is frost common in December?", "yes")]


def test_parse_boolq_formats_questions() -> None:
    lines = [
        {"question": "is the sky blue", "title": "Sky", "answer": "True", "passage": " The sky is blue. "},
        {"question": "do cats bark?", "title": "Cat", "answer": False, "passage": "Cats meow."},
    ]
    got = sources.parse_boolq("\n".join(json.dumps(x) for x in lines).encode())
    assert [(ex.question, ex.label, ex.context) for ex in got] == [
        ("Is the sky blue?", "yes", "The sky is blue."), ("Do cats bark?", "no", "Cats meow.")]


def test_gsm8k_wrong_answer_properties() -> None:
    for gold in [0, 1, 2, 9, 10, 18, 99, 100, 540, 999, 1000, 5600, 70000, 2880000, -3, -10]:
        for key in range(50):
            wrong = sources.gsm8k_wrong_answer(gold, str(key))
            assert wrong != gold
            assert (wrong < 0) == (gold < 0)
            assert len(str(abs(wrong))) == len(str(abs(gold)))
            assert wrong == sources.gsm8k_wrong_answer(gold, str(key))


# -- the shipped real datasets (no network) ----------------------------------------------------------------


def test_shipped_strategyqa() -> None:
    ds = load_dataset("strategyqa")
    assert (len(ds), ds.n_yes, ds.n_no) == (2289, 1070, 1219)
    assert all(not ex.question.lower().startswith("q:") and ex.context is None for ex in ds)
    assert sum(ex.question.endswith("?") for ex in ds) >= 2250
    assert ds.info["kind"] == "shipped" and "strategyqa_train.json" in ds.info["source"]
    # the splits the README's numbers use: a stable hash of the id, 30% test
    assert (len(ds.split("test")), len(ds.split("train"))) == (677, 1612)


def test_shipped_gsm8k_verify() -> None:
    ds = load_dataset("gsm8k-verify")
    assert ds.n_yes == ds.n_no == 1319
    groups: dict[str, set[str]] = {}
    for ex in ds:
        groups.setdefault(ex.group, set()).add(ex.label)
        assert ex.question.splitlines()[-1].startswith("Is the answer to this problem ")
    assert len(groups) == 1319 and all(labels == {"yes", "no"} for labels in groups.values())
    test_groups = {ex.group for ex in ds.split("test")}
    assert not test_groups & {ex.group for ex in ds.split("train")}


def test_shipped_boolq() -> None:
    ds = load_dataset("boolq")
    assert (len(ds), ds.n_yes, ds.n_no) == (3270, 2033, 1237)
    assert all(ex.context and len(ex.context) > 20 for ex in ds)
    assert all(ex.question[0].isupper() and ex.question.endswith("?") for ex in ds)
    assert len(load_dataset("boolq", split="test", limit=100)) == 100


def test_load_datasets_mixes_and_prefixes_ids_only_when_several():
    from nasa_lens.datasets import load_datasets

    one = load_datasets(["arithmetic"], split="train", limit=6, seed=1)
    assert [e.id for e in one] == [e.id for e in load_dataset("arithmetic", split="train", limit=6, seed=1)]
    mixed = load_datasets(["arithmetic", "prime"], split="train", limit=6, seed=1)
    assert len(mixed) == 12 and len({e.id for e in mixed}) == 12
    assert [e.id for e in mixed[:6]] == [f"arithmetic:{e.id}" for e in one]
    assert all(e.id.startswith("prime:") for e in mixed[6:])
    assert [e.question for e in mixed[:6]] == [e.question for e in one]
    with pytest.raises(DatasetError, match="no dataset named"):
        load_datasets([])
