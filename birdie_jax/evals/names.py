"""Name, number and word generators that ship with the code (no downloads).

64 first names × 64 last names give 4,096 distinct full names, enough for the paper's
books of up to 800 entries; phone numbers are random ``ddd-ddd-dddd``.
"""

from __future__ import annotations

import numpy as np

from birdie_jax.errors import DataError

FIRST_NAMES = (
    "Ada Alan Alice Amir Anna Arjun Beatriz Boris Carla Chen Clara Dmitri Diego Elena Emil Eva Farah Felix Grace "
    "Hana Hugo Ines Igor Isaac Jana Jonas Julia Kai Karim Lara Leo Lina Lucas Maya Marco Mei Nadia Nils Noah Olga "
    "Omar Paula Pedro Priya Quinn Rosa Ravi Sara Sven Sofia Tariq Tess Theo Uma Ugo Vera Victor Wen Willa Xavier "
    "Yara Yusuf Zoe Zeno").split()
LAST_NAMES = (
    "Abbott Alvarez Baker Berg Brandt Castro Chang Costa Dalton Diaz Ekstrom Evans Fischer Flores Garcia Gupta "
    "Hansen Hayes Ibarra Ito Jensen Jones Kato Keller Khan Kowalski Larsen Lopez Meyer Moreau Nakamura Novak "
    "Okafor Olsen Park Patel Quinlan Rossi Russo Santos Schmidt Silva Tanaka Torres Ueda Usman Vargas Vogel Walsh "
    "Weber Wright Xu Yamada Young Zhang Ziegler Bianchi Dubois Lindqvist Mendez Nguyen Popescu Reyes Sato").split()
#: Words used as answers of generated facts (code names, attribute values).
CODE_WORDS = (
    "amber anvil aspen badger basalt beacon birch bison cactus canyon cedar cobalt comet coral cypress delta "
    "ember falcon fennel fjord garnet glacier granite harbor hazel heron indigo iris jasper juniper kestrel lagoon "
    "lantern lotus maple marble meadow mesa nectar nimbus oasis onyx orchid otter pebble pepper quartz quill raven "
    "reef saffron sequoia sierra spruce tundra umber valley walnut willow yarrow zephyr zinc").split()
CITIES = ("Aberdeen Bergen Cairo Dakar Essen Fresno Geneva Hanoi Izmir Jaipur Kyoto Lima Malmo Nantes Oslo Porto "
          "Quito Riga Seville Tampere Utrecht Valencia Windhoek Xiamen York Zagreb").split()



def unique_names(rng: np.random.Generator, count: int) -> list[str]:
    """``count`` distinct "First Last" names."""
    total = len(FIRST_NAMES) * len(LAST_NAMES)
    if not 0 < count <= total:
        raise DataError(f"can make between 1 and {total} distinct names, asked for {count}")
    picks = rng.choice(total, count, replace=False)
    return [f"{FIRST_NAMES[i // len(LAST_NAMES)]} {LAST_NAMES[i % len(LAST_NAMES)]}" for i in picks]


def phone_number(rng: np.random.Generator) -> str:
    """A random ``ddd-ddd-dddd``."""
    d = "".join(str(v) for v in rng.integers(0, 10, size=10))
    return f"{d[:3]}-{d[3:6]}-{d[6:]}"
