"""Counter-based random numbers: every random number is a hash of (particle key, counter).

The transport steps the particles of many events together for speed, yet each event must be
the same whichever shard, batch or worker simulates it. So no stream is shared: a particle
carries a 64-bit key derived from its event's seed and its ancestry, and the n-th random
number it needs is ``hash(key, n)`` (the idea behind Random123's Philox; the hash here is
SplitMix64, two rounds). Nothing depends on how particles are batched.
"""

from __future__ import annotations

import functools

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_TWO53 = float(2**53)


def splitmix64(x: np.ndarray | int) -> np.ndarray:
    """SplitMix64 finaliser (Steele, Lea, Flood 2014): a bijective 64-bit mixer."""
    with np.errstate(over="ignore"):  # wrap-around arithmetic is the point
        z = np.asarray(x, dtype=np.uint64) + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def derive(keys: np.ndarray | int, *tags: int | np.ndarray) -> np.ndarray:
    """Child keys: a key mixed with integer tags (e.g. step number, process, index)."""
    k = np.asarray(keys, dtype=np.uint64)
    for t in tags:
        k = splitmix64(k ^ splitmix64(np.asarray(t, dtype=np.int64).astype(np.uint64)))
    return k


_MASK = (1 << 64) - 1


@functools.lru_cache(maxsize=1 << 16)
def _tag(counter: int, stream: int) -> np.uint64:
    """SplitMix64 of (counter, stream) in Python integers (no array overhead)."""
    z = ((counter << 16) + stream + 0x9E3779B97F4A7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return np.uint64(z ^ (z >> 31))


def _mix_array(z: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on a uint64 array (array arithmetic wraps silently)."""
    z = z + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def uniform(keys: np.ndarray, counter: int | np.ndarray, stream: int = 0) -> np.ndarray:
    """Uniform numbers in the open interval (0, 1), one per key."""
    keys = np.atleast_1d(np.asarray(keys, dtype=np.uint64))
    if isinstance(counter, (int, np.integer)):
        z = _mix_array(keys ^ _tag(int(counter), int(stream)))
    else:
        tag = np.asarray(counter, dtype=np.int64).astype(np.uint64) * np.uint64(1 << 16)
        z = _mix_array(keys ^ splitmix64(tag + np.uint64(stream)))
    return ((z >> np.uint64(11)).astype(np.float64) + 0.5) / _TWO53


def normal(keys: np.ndarray, counter: int | np.ndarray, stream: int = 0) -> np.ndarray:
    """Standard normal numbers (Box-Muller on two hashed uniforms)."""
    u1 = uniform(keys, counter, 2 * stream + 1000)
    u2 = uniform(keys, counter, 2 * stream + 1001)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def event_key(seed: int, event_index: int) -> int:
    """The root key of one event, from the config's seed and the global event index."""
    state = np.random.SeedSequence([int(seed), int(event_index)]).generate_state(1, np.uint64)
    return int(state[0])


def normal_pair(keys: np.ndarray, counter: int | np.ndarray, stream: int = 0
                ) -> tuple[np.ndarray, np.ndarray]:
    """Two independent standard normals per key (both Box-Muller outputs)."""
    r = np.sqrt(-2.0 * np.log(uniform(keys, counter, 2 * stream + 2000)))
    phi = 2.0 * np.pi * uniform(keys, counter, 2 * stream + 2001)
    return r * np.cos(phi), r * np.sin(phi)
