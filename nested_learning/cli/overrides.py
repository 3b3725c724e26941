"""Hydra command-line overrides as runs record them ("model=hope", "+cms_arm=step", "~rates")."""
from __future__ import annotations


def override_key(override: str) -> str:
    """The config key an override sets: "+cms_arm=step" -> "cms_arm"."""
    return override.split("=", 1)[0].lstrip("+~")


def without_key(overrides: list[str], key: str) -> list[str]:
    return [o for o in overrides if override_key(o) != key]


def layered(base: list[str], top: list[str]) -> list[str]:
    """base with every key that top sets replaced by top's override (top's order after base's)."""
    replaced = {override_key(o) for o in top}
    return [o for o in base if override_key(o) not in replaced] + list(top)
