"""Seed derivation: every random stream of the generator is seeded from a few integers."""

from __future__ import annotations

import numpy as np


def sub_seed(*parts: int) -> int:
    """A 32-bit seed derived from ``parts`` (each taken modulo 2**32)."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(1)[0])


def camera_scene_seed(store_seed: int, camera_index: int) -> int:
    """The scene seed of one fixed camera view of a synthetic store (shared by datasets and streams)."""
    return sub_seed(store_seed, camera_index, 0xCA3E7A)
