"""Generated travel stories: one task per travel domain, sentences from templates with slots.

Every task fills the same templates (in the seed's style) with its domain's own words (vehicle,
places, sights) and with colours, objects and times from shared pools. `overlap` sets how many of a
task's colour, object and time words every task shares: 1 gives all tasks the same ones, 0 gives each
task words no other task uses. Sentences are distinct, drawn with a generator seeded by (seed,
domain), and split into training and held-out sentences, so held-out accuracy measures whether the
model generalises to new combinations of words. The split does not check words: now and then (about
one held-out sentence in 40 at the defaults, for some seeds) a held-out sentence holds a word that no
training sentence uses, which no model can predict.
"""
from __future__ import annotations

import math
import random
import string
from dataclasses import dataclass

from nested_learning.data.sampling import draw_distinct, split_heldout, unflatten
from nested_learning.data.tasks import TaskSequence, from_sentences
from nested_learning.errors import UserError

TEMPLATES = (
    "i pack my {colour} {object} for the {vehicle}",
    "i walk to the {place} at {time}",
    "i wait at the {place} for the {colour} {vehicle}",
    "i find my seat on the {vehicle} and watch the {sight} go by",
    "at {time} i take the {vehicle} to the {place} with my {object}",
    "i hold my {object} and look for the {colour} {vehicle} at {time}",
)


@dataclass(frozen=True)
class Domain:
    vehicle: str
    places: tuple[str, ...]
    sights: tuple[str, ...]


DOMAINS = {
    "bus": Domain("bus", ("stop", "depot", "terminal", "shelter"), ("shops", "houses", "parks")),
    "flight": Domain("plane", ("airport", "gate", "runway", "lounge"), ("clouds", "mountains", "coasts")),
    "metro": Domain("metro", ("platform", "escalator", "turnstile", "concourse"), ("tunnels", "lights", "posters")),
    "boat": Domain("boat", ("pier", "dock", "harbour", "marina"), ("waves", "islands", "gulls")),
    "train": Domain("train", ("station", "booking hall", "carriage", "footbridge"), ("trees", "fields", "hills")),
    "tram": Domain("tram", ("tramline", "square", "avenue", "boulevard"), ("streets", "cafes", "bridges")),
    "taxi": Domain("taxi", ("taxi rank", "kerb", "hotel", "corner"), ("buildings", "crowds", "signs")),
    "ferry": Domain("ferry", ("quay", "jetty", "landing", "slipway"), ("cliffs", "lighthouses", "sails")),
}

# Slots whose words tasks may share; the first `shared` words of a pool go to every task.
POOLS = {
    "colour": ("red", "blue", "green", "white", "black", "yellow", "orange", "purple", "grey", "brown", "pink",
               "silver", "gold", "navy", "teal", "violet", "amber", "beige", "crimson", "ivory", "lilac", "maroon",
               "olive", "tan"),
    "object": ("bag", "ticket", "map", "book", "phone", "coat", "hat", "umbrella", "scarf", "camera", "wallet",
               "sandwich", "apple", "bottle", "jacket", "pen", "notebook", "laptop", "guitar", "kite", "blanket",
               "pillow", "parcel", "suitcase"),
    "time": ("dawn", "noon", "dusk", "night", "midnight", "sunrise", "sunset", "lunchtime", "teatime", "bedtime",
             "daybreak", "nightfall", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
             "eleven", "twelve"),
}


def slot_words(task: int, domain: Domain, words_per_slot: int, shared: int) -> dict[str, tuple[str, ...]]:
    """Every slot's words for the task-th task: its domain's own, and its share of each pool."""
    own = words_per_slot - shared
    words = {"vehicle": (domain.vehicle,), "place": domain.places, "sight": domain.sights}
    for slot, pool in POOLS.items():
        start = shared + task * own
        words[slot] = pool[:shared] + pool[start : start + own]
    return words


def fields(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def story(number: int, words: dict[str, tuple[str, ...]]) -> str:
    """The number-th distinct sentence of a task: templates in order, each over all its slot fillings."""
    for template in TEMPLATES:
        sizes = [len(words[f]) for f in fields(template)]
        count = math.prod(sizes)
        if number < count:
            digits = unflatten(number, sizes)
            return template.format(**{f: words[f][d] for f, d in zip(fields(template), digits)})
        number -= count
    raise IndexError(number)


def capacity(words: dict[str, tuple[str, ...]]) -> int:
    return sum(math.prod(len(words[f]) for f in fields(t)) for t in TEMPLATES)


def story_tasks(
    name: str = "stories",
    num_tasks: int = 4,
    sentences_per_task: int = 40,
    heldout_fraction: float = 0.25,
    overlap: float = 0.5,
    words_per_slot: int = 4,
    repeats: int = 4,
    seed: int = 0,
) -> TaskSequence:
    """The first `num_tasks` domains of DOMAINS, each a task of `sentences_per_task` distinct sentences."""
    if not 1 <= num_tasks <= len(DOMAINS):
        raise UserError(f"task.num_tasks={num_tasks}: must lie in 1..{len(DOMAINS)} (domains: {', '.join(DOMAINS)})")
    if sentences_per_task < 1:
        raise UserError(f"task.sentences_per_task={sentences_per_task}: must be an integer >= 1")
    if words_per_slot < 1:
        raise UserError(f"task.words_per_slot={words_per_slot}: must be an integer >= 1")
    if not 0.0 <= overlap <= 1.0:
        raise UserError(f"task.overlap={overlap}: must lie in [0, 1]")
    shared = round(overlap * words_per_slot)
    needed = shared + num_tasks * (words_per_slot - shared)
    pool = min(len(p) for p in POOLS.values())
    if needed > pool:
        raise UserError(
            f"task.overlap={overlap}: {num_tasks} tasks of {words_per_slot} words per slot need {needed} words per pool, "
            f"the pools have {pool}; raise task.overlap or lower task.words_per_slot or task.num_tasks"
        )
    train, held = {}, {}
    for t, domain_name in enumerate(list(DOMAINS)[:num_tasks]):
        words = slot_words(t, DOMAINS[domain_name], words_per_slot, shared)
        rng = random.Random(f"{seed}:{domain_name}")
        numbers = draw_distinct(
            capacity(words), sentences_per_task, rng, "task.sentences_per_task", f"the templates of task {domain_name!r}"
        )
        train[domain_name], held_out = split_heldout([story(n, words) for n in numbers], heldout_fraction, "task.heldout_fraction")
        if held_out:
            held[domain_name] = held_out
    return from_sentences(name, train, repeats, held)
