"""Built-in synthetic yes/no reasoning tasks.

Every generator has the signature ``fn(n, difficulty, seed) -> list[Example]`` and is listed in
:data:`GENERATORS` with a one-line description. Guarantees:

* exactly balanced labels: example ``i`` is "yes" for even ``i`` and "no" for odd ``i`` (an odd ``n`` has
  one extra "yes");
* deterministic: example ``i`` depends only on (name, difficulty, seed, i) and the examples before it, so
  the same arguments give the same examples and ids (``arithmetic-d2-0007``), and a larger ``n`` extends
  a smaller one;
* questions are unique within a dataset (so a train/test split never shares a question);
* ``difficulty`` 1..5 scales number sizes, the number of steps or the expression depth;
* every label is recomputed from the constructed problem and checked before it is returned.
"""
from __future__ import annotations

import datetime as dt
import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from nasa_lens.datasets.core import DatasetError, Example

__all__ = ["GENERATORS", "Generator", "generate", "DEFAULT_N", "DEFAULT_DIFFICULTY"]

DEFAULT_N = 400
DEFAULT_DIFFICULTY = 2
MAX_DIFFICULTY = 5
_MAX_TRIES = 500

# A maker draws one problem from ``rng`` at ``difficulty`` aiming at the answer ``want`` (True = "yes")
# and returns (question, truth) with ``truth`` recomputed from the problem itself.
Maker = Callable[[random.Random, int, bool], tuple[str, bool]]


@dataclass(frozen=True)
class Generator:
    """A registered generator: name, one-line description and the problem maker."""

    name: str
    description: str
    maker: Maker

    def __call__(self, n: int = DEFAULT_N, difficulty: int = DEFAULT_DIFFICULTY, seed: int = 0) -> list[Example]:
        return generate(self.name, self.maker, n, difficulty, seed)


def generate(name: str, maker: Maker, n: int, difficulty: int, seed: int) -> list[Example]:
    """Run ``maker`` for ``n`` balanced, unique, self-checked examples (see the module docs)."""
    _check_args(name, n, difficulty, seed)
    examples: list[Example] = []
    seen: set[str] = set()
    for i in range(n):
        want = i % 2 == 0
        rng = random.Random(f"{name}|d{difficulty}|s{seed}|{i}")
        for _ in range(_MAX_TRIES):
            question, truth = maker(rng, difficulty, want)
            if truth != want:
                raise RuntimeError(f"generator {name!r} built a {truth}-labelled question for {want}: {question}")
            if question not in seen:
                break
        else:
            raise DatasetError(
                f"generator {name!r} at difficulty {difficulty} ran out of distinct questions after {i} "
                f"examples; use a smaller n or a higher difficulty"
            )
        seen.add(question)
        examples.append(Example(question=question, label="yes" if want else "no", id=f"{name}-d{difficulty}-{i:04d}"))
    return examples


def _check_args(name: str, n: int, difficulty: int, seed: int) -> None:
    for key, value in (("n", n), ("difficulty", difficulty), ("seed", seed)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise DatasetError(f"generator {name!r}: {key} must be an int, got {value!r}")
    if n < 0:
        raise DatasetError(f"generator {name!r}: n must be >= 0, got {n}")
    if not 1 <= difficulty <= MAX_DIFFICULTY:
        raise DatasetError(f"generator {name!r}: difficulty must be 1..{MAX_DIFFICULTY}, got {difficulty}")


# -- shared helpers ------------------------------------------------------------------------------------------


def _fmt(x: int) -> str:
    """An integer with thousands separators: 4812 -> '4,812'."""
    return f"{x:,}"


def _digits(rng: random.Random, n_digits: int) -> int:
    """A random positive integer with exactly ``n_digits`` digits."""
    return rng.randint(10 ** (n_digits - 1) if n_digits > 1 else 1, 10**n_digits - 1)


def _swap_digits(x: int, rng: random.Random) -> int | None:
    """``x`` with two adjacent differing digits swapped (never a leading zero), or None if impossible."""
    s = str(abs(x))
    spots = [j for j in range(len(s) - 1) if s[j] != s[j + 1] and not (j == 0 and s[j + 1] == "0")]
    if not spots:
        return None
    j = rng.choice(spots)
    swapped = int(s[:j] + s[j + 1] + s[j] + s[j + 2 :])
    return -swapped if x < 0 else swapped


def _change_digit(x: int, rng: random.Random) -> int:
    """``x`` with one digit moved up or down by one (a carry slip; same number of digits)."""
    s = str(abs(x))
    j = rng.randrange(len(s))
    lowest = 1 if j == 0 and len(s) > 1 else 0
    choices = [str(d) for d in (int(s[j]) - 1, int(s[j]) + 1) if lowest <= d <= 9]
    changed = int(s[:j] + rng.choice(choices) + s[j + 1 :])
    return -changed if x < 0 else changed


def near_miss(truth: int, rng: random.Random, allow_negative: bool = False) -> int:
    """A plausible wrong value for ``truth``: off by 1-3 or by a power of ten, two adjacent digits swapped,
    or one digit off by one. Never equal to ``truth``; never negative unless ``allow_negative``."""
    for _ in range(100):
        kind = rng.choice(("small", "small", "place", "swap", "digit"))
        if kind == "small":
            wrong = truth + rng.choice((-1, 1)) * rng.randint(1, 3)
        elif kind == "place":
            wrong = truth + rng.choice((-1, 1)) * 10 ** rng.randint(1, max(1, len(str(abs(truth))) - 1))
        elif kind == "swap":
            swapped = _swap_digits(truth, rng)
            wrong = truth if swapped is None else swapped
        else:
            wrong = _change_digit(truth, rng)
        if wrong != truth and (allow_negative or wrong >= 0):
            return wrong
    return truth + 1


# -- arithmetic ----------------------------------------------------------------------------------------------

_ARITH_LEVELS = {  # difficulty -> list of (operator, digits of a, digits of b)
    1: [("+", 1, 1), ("+", 2, 1), ("-", 2, 1)],
    2: [("+", 2, 2), ("-", 2, 2)],
    3: [("+", 3, 3), ("-", 3, 3), ("*", 2, 1)],
    4: [("+", 4, 4), ("-", 4, 3), ("*", 2, 2)],
    5: [("+", 5, 5), ("-", 5, 5), ("*", 3, 2), ("*", 3, 3)],
}
_OPS: dict[str, Callable[[int, int], int]] = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


def _arithmetic(rng: random.Random, difficulty: int, want: bool) -> tuple[str, bool]:
    op, da, db = rng.choice(_ARITH_LEVELS[difficulty])
    a, b = _digits(rng, da), _digits(rng, db)
    if op == "-" and b > a:
        a, b = b, a
    if op == "*":
        a, b = max(a, 2), max(b, 2)
    truth = _OPS[op](a, b)
    shown = truth if want else near_miss(truth, rng)
    return f"Is {a} {op} {b} equal to {shown}?", _OPS[op](a, b) == shown


# -- multistep -----------------------------------------------------------------------------------------------

_PEOPLE = [("Tom", "he"), ("Anna", "she"), ("Ravi", "he"), ("Mia", "she"), ("Lucas", "he"), ("Chen", "he"),
           ("Sara", "she"), ("Omar", "he"), ("Emma", "she"), ("Kofi", "he"), ("Lena", "she"), ("Diego", "he")]
_ITEMS = ["apples", "marbles", "stickers", "cookies", "books", "coins", "pencils", "cards", "stamps", "shells"]
_MULTI_LEVELS = {1: (2, 10), 2: (3, 15), 3: (4, 30), 4: (5, 60), 5: (6, 120)}  # difficulty -> (steps, max number)


def _count(x: int, item: str) -> str:
    """'1 apple', '3 apples' (all items are regular plurals)."""
    return f"{x} {item[:-1] if x == 1 else item}"


def _multistep_step(rng: random.Random, count: int, top: int, item: str, pron: str) -> tuple[str, int]:
    """One word-problem step applied to ``count``: (sentence, new count)."""
    kinds = ["bags", "more", "gift"] + (["away", "lose"] if count > 2 else [])
    kind = rng.choice(kinds)
    if kind == "bags":
        k, m = rng.randint(2, max(2, min(9, top // 3))), rng.randint(2, max(3, top // 2))
        return f"{pron.capitalize()} buys {k} bags of {m} {item}.", count + k * m
    if kind == "more":
        x = rng.randint(1, top)
        return f"{pron.capitalize()} finds {x} more {item[:-1] if x == 1 else item}.", count + x
    if kind == "gift":
        x = rng.randint(1, top)
        return f"A friend gives {'him' if pron == 'he' else 'her'} {_count(x, item)}.", count + x
    x = rng.randint(1, min(top, count - 1))
    verb = "gives away" if kind == "away" else "loses"
    return f"{pron.capitalize()} {verb} {_count(x, item)}.", count - x


def _multistep(rng: random.Random, difficulty: int, want: bool) -> tuple[str, bool]:
    steps, top = _MULTI_LEVELS[difficulty]
    name, pron = rng.choice(_PEOPLE)
    item = rng.choice(_ITEMS)
    count = rng.randint(3, top)
    sentences = [f"{name} has {_count(count, item)}."]
    for _ in range(steps):
        sentence, count = _multistep_step(rng, count, top, item, pron)
        sentences.append(sentence)
    shown = count if want else near_miss(count, rng)
    if shown <= 0:
        shown = count + rng.randint(1, 3)
    sentences.append(f"Does {pron} have {_count(shown, item)} now?")
    return " ".join(sentences), _replay_multistep(" ".join(sentences)) == shown


def _replay_multistep(text: str) -> int:
    """Recompute the final count of a multistep word problem from its text (independent check)."""
    words = text.replace(".", " ").replace("?", " ").split()
    count = int(words[2])
    for j, w in enumerate(words):
        if w == "bags":
            count += int(words[j - 1]) * int(words[j + 2])
        elif w in ("finds", "gives") and words[j + 1] != "away":
            count += int(words[j + 1]) if w == "finds" else int(words[j + 2])
        elif w == "away" or w == "loses":
            count -= int(words[j + 1])
    return count


# -- comparison ----------------------------------------------------------------------------------------------

_CMP_DIGITS = {1: (2, 2), 2: (3, 4), 3: (4, 5), 4: (5, 7), 5: (7, 9)}


def _comparison(rng: random.Random, difficulty: int, want: bool) -> tuple[str, bool]:
    lo, hi = _CMP_DIGITS[difficulty]
    a = _digits(rng, rng.randint(lo, hi))
    b = a
    while b == a:
        kind = rng.choice(("swap", "digit", "small") if difficulty > 1 else ("digit", "small", "random"))
        if kind == "swap":
            b = _swap_digits(a, rng) or _change_digit(a, rng)
        elif kind == "digit":
            b = _change_digit(a, rng)
        elif kind == "small":
            b = max(1, a + rng.choice((-1, 1)) * rng.randint(1, 9))
        else:
            b = _digits(rng, len(str(a)))
    x, y = (a, b) if rng.random() < 0.5 else (b, a)
    relation = "greater" if (x > y) == want else "less"
    truth = x > y if relation == "greater" else x < y
    return f"Is {_fmt(x)} {relation} than {_fmt(y)}?", truth


# -- prime ---------------------------------------------------------------------------------------------------

# difficulty -> (low, high, smallest allowed prime factor of the composites)
_PRIME_LEVELS = {1: (2, 2_000, 2), 2: (50, 5_000, 3), 3: (100, 20_000, 7), 4: (1_000, 200_000, 11),
                 5: (10_000, 2_000_000, 31)}


def is_prime(x: int) -> bool:
    """Deterministic trial-division primality test."""
    if x < 2:
        return False
    if x % 2 == 0:
        return x == 2
    return all(x % d for d in range(3, math.isqrt(x) + 1, 2))


def _smallest_factor(x: int) -> int:
    for d in range(2, math.isqrt(x) + 1):
        if x % d == 0:
            return d
    return x


def _prime(rng: random.Random, difficulty: int, want: bool) -> tuple[str, bool]:
    low, high, min_factor = _PRIME_LEVELS[difficulty]
    while True:
        x = rng.randint(low, high)
        if want and is_prime(x):
            break
        if not want and not is_prime(x) and x > 1 and _smallest_factor(x) >= min_factor:
            break
    return f"Is {x} a prime number?", is_prime(x)


# -- boolean -------------------------------------------------------------------------------------------------

_BOOL_LEAVES = {1: (3, 4), 2: (4, 5), 3: (5, 6), 4: (6, 8), 5: (8, 10)}  # literals per expression


def _bool_expr(rng: random.Random, leaves: int, p_not: float, top: bool = True) -> str:
    """A random boolean expression with ``leaves`` literals, parenthesised like Python would need."""
    if leaves == 1:
        lit = rng.choice(("True", "False"))
        return f"not {lit}" if rng.random() < p_not else lit
    left = rng.randint(1, leaves - 1)
    op = rng.choice(("and", "or"))
    expr = f"{_bool_expr(rng, left, p_not, False)} {op} {_bool_expr(rng, leaves - left, p_not, False)}"
    if top:
        return expr
    return f"not ({expr})" if rng.random() < p_not / 2 else f"({expr})"


def eval_bool(expr: str) -> bool:
    """Evaluate a generated boolean expression without ``eval`` (recursive descent, Python precedence)."""
    tokens = expr.replace("(", " ( ").replace(")", " ) ").split()
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> str:
        nonlocal pos
        pos += 1
        return tokens[pos - 1]

    def parse_or() -> bool:
        value = parse_and()
        while peek() == "or":
            take()
            rhs = parse_and()
            value = value or rhs
        return value

    def parse_and() -> bool:
        value = parse_not()
        while peek() == "and":
            take()
            rhs = parse_not()
            value = value and rhs
        return value

    def parse_not() -> bool:
        if peek() == "not":
            take()
            return not parse_not()
        tok = take()
        if tok == "(":
            value = parse_or()
            take()
            return value
        return tok == "True"

    return parse_or()


def _boolean(rng: random.Random, difficulty: int, want: bool) -> tuple[str, bool]:
    p_not = 0.15 + 0.08 * difficulty
    while True:
        expr = _bool_expr(rng, rng.randint(*_BOOL_LEAVES[difficulty]), p_not)
        if eval_bool(expr) == want:
            return f"Is the expression {expr} true?", eval_bool(expr)


# -- sorted --------------------------------------------------------------------------------------------------

_SORT_LEVELS = {1: (3, 4, 20), 2: (4, 5, 50), 3: (5, 7, 100), 4: (7, 9, 500), 5: (9, 12, 1000)}


def _is_sorted(xs: list[int], descending: bool = False) -> bool:
    return all((a >= b) if descending else (a <= b) for a, b in zip(xs[:-1], xs[1:], strict=True))


def _sorted(rng: random.Random, difficulty: int, want: bool) -> tuple[str, bool]:
    lo, hi, top = _SORT_LEVELS[difficulty]
    descending = difficulty >= 4 and rng.random() < 0.5
    while True:
        xs = sorted((rng.randint(0, top) for _ in range(rng.randint(lo, hi))), reverse=descending)
        if not want:
            if difficulty <= 2 and rng.random() < 0.5:
                rng.shuffle(xs)
            else:  # a near miss: swap one adjacent pair
                j = rng.randrange(len(xs) - 1)
                xs[j], xs[j + 1] = xs[j + 1], xs[j]
        if _is_sorted(xs, descending) == want:
            break
    order = "descending" if descending else "ascending"
    return f"Is the list {xs} sorted in {order} order?", _is_sorted(xs, descending)


# -- parity --------------------------------------------------------------------------------------------------

_PARITY_LEVELS = {1: (1, 3, 1), 2: (4, 6, 1), 3: (2, 3, 2), 4: (2, 4, 3), 5: (3, 4, 4)}  # digits lo/hi, terms


def _parity(rng: random.Random, difficulty: int, want: bool) -> tuple[str, bool]:
    lo, hi, terms = _PARITY_LEVELS[difficulty]
    nums = [_digits(rng, rng.randint(lo, hi)) for _ in range(terms)]
    if difficulty == 5:  # a product and a sum: 37 * 12 + 5 + 8
        value = nums[0] * nums[1] + sum(nums[2:])
        expr = f"{nums[0]} * {nums[1]} + " + " + ".join(map(str, nums[2:]))
    else:
        value = sum(nums)
        expr = " + ".join(map(str, nums)) if terms > 1 else _fmt(nums[0])
    parity = "even" if (value % 2 == 0) == want else "odd"
    subject = f"the result of {expr}" if terms > 1 else expr
    truth = (value % 2 == 0) if parity == "even" else (value % 2 == 1)
    return f"Is {subject} an {parity} number?", truth


# -- divisibility --------------------------------------------------------------------------------------------

_DIV_LEVELS = {1: ((2, 5, 10), 2, 3), 2: ((3, 4, 6, 9), 3, 3), 3: ((6, 7, 8, 11, 12), 3, 4),
               4: ((7, 11, 13, 17), 4, 5), 5: ((13, 17, 19, 23, 29, 37), 5, 6)}  # divisors, digits lo/hi


def _divisibility(rng: random.Random, difficulty: int, want: bool) -> tuple[str, bool]:
    divisors, lo, hi = _DIV_LEVELS[difficulty]
    d = rng.choice(divisors)
    x = _digits(rng, rng.randint(lo, hi)) // d * d  # a multiple of d
    x = max(x, d * 2)
    if not want:  # a near miss, e.g. one more than a multiple
        x += rng.choice((-1, 1)) * rng.randint(1, d - 1)
    return f"Is {x} divisible by {d}?", x % d == 0


# -- date ordering -------------------------------------------------------------------------------------------

_DATE_SPAN_DAYS = {1: (3650, 36500), 2: (200, 3650), 3: (31, 200), 4: (3, 31), 5: (1, 3)}


def _fmt_date(d: dt.date) -> str:
    return f"{d:%B} {d.day}, {d.year}"


def _date(rng: random.Random, difficulty: int, want: bool) -> tuple[str, bool]:
    lo, hi = _DATE_SPAN_DAYS[difficulty]
    a = dt.date(1900, 1, 1) + dt.timedelta(days=rng.randint(0, 200 * 365))
    b = a + dt.timedelta(days=rng.choice((-1, 1)) * rng.randint(lo, hi))
    if difficulty >= 4 and rng.random() < 0.5 and a.day <= 28:  # same day number, neighbouring months
        b = a.replace(month=a.month % 12 + 1, year=a.year + (a.month == 12))
    if rng.random() < 0.5:
        a, b = b, a
    relation = "before" if (a < b) == want else "after"
    truth = a < b if relation == "before" else a > b
    return f"Did {_fmt_date(a)} come {relation} {_fmt_date(b)}?", truth


# -- category ------------------------------------------------------------------------------------------------

# Our own word lists: category -> (domain, members). Every member belongs to exactly one category here.
_CATEGORIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "animal": ("living", ("dog", "cat", "horse", "cow", "lion", "tiger", "elephant", "rabbit", "sheep", "goat", "bear",
                          "wolf", "fox", "deer", "monkey", "zebra", "giraffe", "mouse", "camel", "pig")),
    "bird": ("living", ("sparrow", "eagle", "owl", "parrot", "pigeon", "crow", "swan", "duck", "penguin", "robin",
                        "hawk", "goose", "seagull", "ostrich", "flamingo", "peacock", "falcon", "woodpecker", "canary", "turkey")),
    "fruit": ("food", ("apple", "banana", "orange", "pear", "grape", "cherry", "peach", "plum", "mango", "lemon",
                       "strawberry", "pineapple", "watermelon", "kiwi", "apricot", "raspberry", "blueberry", "coconut", "lime", "fig")),
    "vegetable": ("food", ("carrot", "potato", "onion", "cabbage", "broccoli", "spinach", "lettuce", "cucumber", "pea",
                           "celery", "garlic", "radish", "turnip", "leek", "beetroot", "cauliflower", "parsnip", "kale", "asparagus", "courgette")),
    "colour": ("idea", ("red", "blue", "green", "yellow", "purple", "pink", "brown", "black", "white", "grey",
                        "gold", "violet", "turquoise", "crimson", "beige", "maroon", "navy", "scarlet", "indigo", "lavender")),
    "tool": ("object", ("hammer", "screwdriver", "wrench", "saw", "drill", "chisel", "pickaxe", "shovel", "rake", "axe",
                        "spanner", "file", "crowbar", "trowel", "hoe", "mallet", "tape measure", "clamp", "sander", "spade")),
    "vehicle": ("object", ("car", "bus", "truck", "bicycle", "motorcycle", "train", "tram", "van", "taxi", "tractor",
                           "scooter", "lorry", "ambulance", "canoe", "yacht", "airplane", "helicopter", "submarine", "ferry", "jeep")),
    "musical instrument": ("object", ("piano", "guitar", "violin", "drum", "flute", "trumpet", "cello", "harp", "clarinet", "saxophone",
                                      "trombone", "oboe", "banjo", "ukulele", "accordion", "harmonica", "tuba", "bassoon", "xylophone", "mandolin")),
    "country": ("place", ("France", "Germany", "Italy", "Spain", "Japan", "China", "India", "Brazil", "Canada", "Mexico",
                          "Egypt", "Kenya", "Peru", "Norway", "Sweden", "Poland", "Greece", "Turkey", "Chile", "Australia")),
    "body part": ("living", ("hand", "foot", "knee", "elbow", "shoulder", "finger", "toe", "ear", "nose", "mouth",
                             "eye", "chin", "wrist", "ankle", "neck", "heel", "thumb", "lip", "forehead", "hip")),
}
assert len({m for _, ms in _CATEGORIES.values() for m in ms}) == sum(len(ms) for _, ms in _CATEGORIES.values())
_CAT_TEMPLATES = {1: ("Is {a} {x} {c}?", "Is {a} {x} a type of {cb}?"), 2: ("Is {a} {x} {c}?", "Is {a} {x} a kind of {cb}?"),
                  3: ("Is {a} {x} a kind of {cb}?", "Would you call {a} {x} {c}?"),
                  4: ("Would you call {a} {x} {c}?", "Is it true that {a} {x} is {c}?"),
                  5: ("Is it true that {a} {x} is {c}?", "Is it correct to say that {a} {x} is {c}?")}


def _article(word: str) -> str:
    return "an" if word[0].lower() in "aeiou" else "a"


def _category(rng: random.Random, difficulty: int, want: bool) -> tuple[str, bool]:
    cat = rng.choice(sorted(_CATEGORIES))
    domain, members = _CATEGORIES[cat]
    if want:
        item = rng.choice(members)
    else:
        # difficulty 1-2: the item comes from another domain (a tool asked as a fruit); 3-5: the same domain
        # when there is one (a vegetable asked as a fruit)
        same = [c for c, (d, _) in _CATEGORIES.items() if c != cat and d == domain]
        other = [c for c, (d, _) in _CATEGORIES.items() if d != domain]
        pool = same if difficulty >= 3 and same else other
        item = rng.choice(_CATEGORIES[rng.choice(sorted(pool))][1])
    truth = item in members
    bare = item[0].isupper() or item in _CATEGORIES["colour"][1]  # countries and colours take no article
    a = "" if bare else _article(item)
    template = rng.choice(_CAT_TEMPLATES[difficulty])
    q = " ".join(template.format(a=a, x=item, c=f"{_article(cat)} {cat}", cb=cat).split())
    return q, truth


# -- lookup --------------------------------------------------------------------------------------------------

# The answer is stated in the question itself: a secret number, then a question about it. Difficulty 1 states
# one number ("The secret number is 42. Is the secret number 42?"); difficulty d >= 2 states d people's
# numbers and asks about one of them, a wrong value being preferably another person's number.
_LOOKUP_PEOPLE = ("Anna", "Ben", "Clara", "David", "Emma", "Felix", "Grace", "Henry", "Ida", "Jack", "Karl", "Lena", "Maria",
           "Nina", "Oscar", "Paul", "Rosa", "Sam", "Tina", "Victor")
_LOOKUP_ONE = (("The secret number is {a}.", "Is the secret number {b}?"),
               ("My secret number is {a}.", "Is my secret number {b}?"),
               ("The winning number is {a}.", "Is the winning number {b}?"))


def _lookup(rng: random.Random, difficulty: int, want: bool) -> tuple[str, bool]:
    if difficulty == 1:
        statement, question = rng.choice(_LOOKUP_ONE)
        a = rng.randint(1, 99)
        b = a if want else rng.choice([x for x in range(1, 100) if x != a])
        return f"{statement.format(a=a)} {question.format(b=b)}", a == b
    people = rng.sample(_LOOKUP_PEOPLE, difficulty)
    facts = {p: rng.randint(1, 99) for p in people}
    target = rng.choice(people)
    if want:
        asked = facts[target]
    else:
        others = [v for p, v in facts.items() if p != target and v != facts[target]]
        asked = rng.choice(others) if others and rng.random() < 0.7 else rng.choice([x for x in range(1, 100) if x != facts[target]])
    context = " ".join(f"{p}'s secret number is {v}." for p, v in facts.items())
    return f"{context} Is {target}'s secret number {asked}?", facts[target] == asked


GENERATORS: dict[str, Generator] = {
    g.name: g
    for g in [
        Generator("arithmetic", "Is a sum/difference/product equal to a shown value? (wrong values: near misses)",
                  _arithmetic),
        Generator("multistep", "Multi-step word problem: does the person end up with the stated count?", _multistep),
        Generator("comparison", "Is one number greater/less than another? (digit swaps and near values)", _comparison),
        Generator("prime", "Is a number prime? (harder composites with no small factors at higher difficulty)", _prime),
        Generator("boolean", "Is a nested True/False/and/or/not expression true?", _boolean),
        Generator("sorted", "Is a list of integers sorted? (near misses swap one adjacent pair)", _sorted),
        Generator("parity", "Is a number, sum or product-plus-sum even/odd?", _parity),
        Generator("divisibility", "Is a number divisible by a divisor? (non-multiples are off by a little)",
                  _divisibility),
        Generator("date", "Did one calendar date come before/after another? (closer dates when harder)", _date),
        Generator("category", "Is an everyday word in a category? (an animal, a fruit, a tool...; a confusable category when harder)",
                  _category),
        Generator("lookup", "Is a secret number stated in the question the one asked about? (more people's numbers, "
                  "used as distractors, when harder)", _lookup),
    ]
}
