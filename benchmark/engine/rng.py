"""The random-number-generator states of a run, as plain values a weights_only checkpoint holds.

Python's and numpy's global generators, torch's CPU generator, every CUDA device's when CUDA is
available, and the run's own torch.Generator (the prepared pipeline's augmentation). The
training samplers hold no generator between epochs: theirs is derived from (seed, epoch), so
the epoch is their whole position.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def random_states(generator: torch.Generator | None = None) -> dict[str, Any]:
    """Every generator's state: tensors, numbers, strings and plain containers only."""
    version, internal, gauss = random.getstate()
    numpy_state = np.random.get_state(legacy=False)
    states: dict[str, Any] = {
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
        "numpy": {
            "bit_generator": numpy_state["bit_generator"],
            "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
            "pos": int(numpy_state["state"]["pos"]),
            "has_gauss": int(numpy_state["has_gauss"]),
            "gauss": float(numpy_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    if generator is not None:
        states["generator"] = generator.get_state()
    return states


def restore_random_states(states: dict[str, Any], generator: torch.Generator | None = None) -> None:
    """Set every generator `random_states` saved. CUDA states are restored when this machine
    has as many devices as the one that saved them (a run moved to another device cannot
    replay its CUDA draws)."""
    python = states["python"]
    random.setstate((python["version"], tuple(python["internal"]), python["gauss"]))
    numpy_state = states["numpy"]
    np.random.set_state(
        {
            "bit_generator": numpy_state["bit_generator"],
            "state": {
                "key": numpy_state["key"].numpy().astype(np.uint32),
                "pos": numpy_state["pos"],
            },
            "has_gauss": numpy_state["has_gauss"],
            "gauss": numpy_state["gauss"],
        }
    )
    torch.set_rng_state(states["torch"])
    cuda = states["cuda"]
    if cuda and torch.cuda.is_available() and torch.cuda.device_count() == len(cuda):
        torch.cuda.set_rng_state_all(cuda)
    if generator is not None and "generator" in states:
        generator.set_state(states["generator"])
