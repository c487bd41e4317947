"""A seeded mutator: corpus inputs changed the way parsers break (sans coverage guidance).

Byte-level changes (bit flips, interesting values, truncation, splices, repeats) and,
for text formats, the target's tokens spliced in. The same seed gives the same inputs,
so a failure found by a long run reproduces from its seed and iteration number.
"""

from __future__ import annotations

import random

INTERESTING = (0x00, 0x01, 0x3F, 0x40, 0x7F, 0x80, 0xC0, 0xFF, 0x0A, 0x0D, 0x20, 0x5C)
MAX_SIZE = 1 << 16


class Mutator:
    def __init__(self, seed: int, seeds: list[bytes], tokens: tuple[bytes, ...] = ()) -> None:
        self.rng = random.Random(seed)
        self.seeds = seeds or [b""]
        self.tokens = tokens

    def next(self) -> bytes:
        """One input: a corpus seed changed one to four times, or now and then random bytes."""
        rng = self.rng
        if rng.random() < 0.05:
            return rng.randbytes(rng.randint(0, 512))
        data = bytearray(rng.choice(self.seeds))
        for _ in range(rng.choice((1, 1, 2, 3, 4))):
            self._mutate(data)
        return bytes(data[:MAX_SIZE])

    def _mutate(self, data: bytearray) -> None:
        rng = self.rng
        size = len(data)
        kind = rng.randrange(10 if self.tokens else 8)
        if size == 0:
            data += rng.randbytes(rng.randint(1, 16))
        elif kind == 0:  # flip bits
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(size)] ^= 1 << rng.randrange(8)
        elif kind == 1:  # an interesting byte
            data[rng.randrange(size)] = rng.choice(INTERESTING)
        elif kind == 2:  # truncate
            del data[rng.randrange(size) :]
        elif kind == 3:  # delete a slice
            i = rng.randrange(size)
            del data[i : i + rng.randint(1, 16)]
        elif kind == 4:  # copy a slice elsewhere
            i, j = sorted(rng.randrange(size + 1) for _ in range(2))
            k = rng.randrange(size + 1)
            data[k:k] = data[i:j]
        elif kind == 5:  # repeat a slice many times
            i = rng.randrange(size)
            piece = data[i : i + rng.randint(1, 8)]
            data[i:i] = piece * rng.choice((2, 16, 200))
        elif kind == 6:  # random bytes inserted
            k = rng.randrange(size + 1)
            data[k:k] = rng.randbytes(rng.randint(1, 8))
        elif kind == 7:  # splice in another seed's tail
            other = rng.choice(self.seeds)
            data[rng.randrange(size) :] = other[rng.randrange(len(other) + 1) :]
        elif kind == 8:  # insert a token
            k = rng.randrange(size + 1)
            data[k:k] = rng.choice(self.tokens)
        else:  # replace a word with a token
            k = rng.randrange(size)
            end = k
            while end < size and data[end] not in b" \t\n:,":
                end += 1
            data[k:end] = rng.choice(self.tokens)
