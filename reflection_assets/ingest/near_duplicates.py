"""Near-duplicate rows: MinHash signatures of word shingles (datasketch), found through LSH bands.

Two rows are near-duplicates when the Jaccard similarity of their word-shingle sets reaches the
threshold. What is compared is a row's conversation text (history turns, instruction, input, output),
lower-cased with punctuation dropped, so a re-punctuated or re-cased copy compares as equal and a
reworded one by how many of its shingles survive. The output is part of it on purpose: the same
question with a different answer is a different training example, not a copy. The system prompt is
left out: it is often boilerplate shared by every row and would make unrelated rows look alike.

The index is built incrementally (each row is queried before it is inserted, so the first copy is
kept) and can start from rows read earlier (other partitions, `near_duplicate_store`). The band layout
is datasketch's (`MinHashLSH` picks it: 14 bands of 9 at the default threshold); the buckets are the
project's own (`BandBuckets`): datasketch keeps a set per bucket, one int per band does, so a row costs
about 2.2 KB with its signature where datasketch's index took 5.4 KB (BENCHMARKS.md). LSH only proposes
candidates; each is confirmed on the signatures' estimated Jaccard, so a row is removed only when the
estimate reaches the threshold.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from reflection_assets.documented import documented
from reflection_assets.schema import Pair

SEED = 1  # fixed: signatures are stored and compared across runs
SCHEME = "affine32"  # datasketch's permutation scheme; named so a library default change cannot mix schemes
# Shingles are hashed with CRC-32: stable across processes (unlike hash()), in C, and 3x faster than
# datasketch's SHA-1 default, which dominated the profile; the affine32 scheme mixes its output first.
SHINGLE_HASH = "crc32"
_WORD = re.compile(r"\w+")
# (false positive, false negative) weights of datasketch's band layout: every candidate is confirmed on its
# signature, so a missed copy costs more than an extra candidate. At the default threshold 0.8 this gives
# 14 bands of 9 (the even (0.5, 0.5) gives 9 of 13), and a pair of Jaccard 0.85 is a candidate 97% of the
# time instead of 69%.
LSH_WEIGHTS = (0.1, 0.9)


@dataclass(frozen=True)
class NearDuplicateSettings:
    enabled: bool = documented(True, "remove near-duplicate rows before the teacher sees them")
    threshold: float = documented(
        0.8,
        "Jaccard similarity of two rows' word shingles (instruction, input and output, lower-cased, "
        "punctuation dropped) at which the later row is removed; closer to 1 removes only closer copies",
    )
    shingle_size: int = documented(
        3, "words per shingle; longer shingles make a changed word weigh more, so fewer rows match"
    )
    num_perm: int = documented(128, "MinHash permutations: more estimate similarity more precisely, cost more")
    across_partitions: bool = documented(
        True,
        "also remove rows that near-duplicate the kept rows of the other dataset partitions in the "
        "warehouse (off: within this partition only, e.g. a sample that repeats another on purpose)",
    )

    def __post_init__(self) -> None:
        # Past these bounds datasketch's LSH cannot split the signature into two or more bands.
        if not 0.0 < self.threshold <= 0.95:
            raise ValueError(f"near-duplicate threshold must be in (0, 0.95], got {self.threshold}")
        if self.shingle_size < 1:
            raise ValueError(f"shingle_size must be at least 1, got {self.shingle_size}")
        if self.num_perm < 64:
            raise ValueError(f"num_perm must be at least 64, got {self.num_perm}")

    def scheme(self) -> str:
        """What a stored signature depends on (not the threshold): signatures of another scheme are not comparable."""
        hashing = f"minhash-{SCHEME}-{SHINGLE_HASH} seed={SEED}"
        return f"{hashing} num_perm={self.num_perm} shingle={self.shingle_size} text=v1"


@dataclass(frozen=True)
class Match:
    """The kept row a later row near-duplicates."""

    row_id: str
    where: str  # how to find it: "FILE line 3", with the partition when it is another one
    similarity: float  # the signatures' estimated Jaccard similarity

    def describe(self) -> str:
        return f"near-duplicate of row_id {self.row_id} ({self.where}), estimated similarity {self.similarity:.2f}"


def dedup_text(pair: Pair) -> str:
    """The text two rows are compared on (the module docstring says why these fields)."""
    return "\n".join([*(turn.content for turn in pair.history), pair.instruction, pair.input, pair.output])


def shingles(text: str, size: int) -> list[bytes]:
    """Distinct word `size`-grams of the lower-cased text without punctuation; one shingle when it is shorter."""
    words = _WORD.findall(text.lower())
    if not words:
        return []
    grams = {" ".join(words[i : i + size]) for i in range(max(len(words) - size + 1, 1))}
    return [gram.encode("utf-8") for gram in grams]


class BandBuckets:
    """LSH buckets: per band, a dict from the band's 64-bit key to the slot kept there (a list once two share it).

    Most buckets hold one row, so a plain int (the same object in every band) is what a row costs per band. A
    band's key is the wrapped sum of its values times seeded odd 64-bit multipliers, one vector operation per
    row; two different bands sharing a key only add a candidate, which the signature check drops.
    """

    def __init__(self, bands: int, rows: int) -> None:
        self.bands, self.rows = bands, rows
        draws = np.random.default_rng(SEED).integers(0, 2**63, size=rows, dtype=np.uint64)
        self._multipliers = draws * np.uint64(2) + np.uint64(1)  # odd
        self._buckets: list[dict[int, int | list[int]]] = [{} for _ in range(bands)]

    def keys(self, signature: np.ndarray) -> list[int]:
        banded = signature[: self.bands * self.rows].astype(np.uint64).reshape(self.bands, self.rows)
        with np.errstate(over="ignore"):  # wrapping is the point: arithmetic modulo 2**64
            return (banded * self._multipliers).sum(axis=1, dtype=np.uint64).tolist()

    def candidates(self, keys: list[int]) -> set[int]:
        found: set[int] = set()
        for bucket, key in zip(self._buckets, keys):
            held = bucket.get(key)
            if held is None:
                continue
            if isinstance(held, int):
                found.add(held)
            else:
                found.update(held)
        return found

    def insert(self, slot: int, keys: list[int]) -> None:
        for bucket, key in zip(self._buckets, keys):
            held = bucket.get(key)
            if held is None:
                bucket[key] = slot
            elif isinstance(held, int):
                bucket[key] = [held, slot]
            else:
                held.append(slot)


class NearDuplicateIndex:
    """Rows kept so far, by MinHash signature; `match` finds a kept row a new one near-duplicates."""

    def __init__(self, settings: NearDuplicateSettings | None = None) -> None:
        from datasketch import MinHash, MinHashLSH

        self.settings = settings or NearDuplicateSettings()
        self._minhash = MinHash
        self._permutations = MinHash(num_perm=self.settings.num_perm, seed=SEED, scheme=SCHEME).permutations
        layout = MinHashLSH(threshold=self.settings.threshold, num_perm=self.settings.num_perm, weights=LSH_WEIGHTS)
        self._buckets = BandBuckets(layout.b, layout.r)
        self._signatures = np.empty((1024, self.settings.num_perm), dtype=np.uint32)
        self._row_ids: list[str] = []
        self._wheres: list[str] = []

    def __len__(self) -> int:
        return len(self._row_ids)

    def signature(self, text: str) -> np.ndarray | None:
        """The MinHash signature of `text` (uint32, num_perm long); None for a text with no words."""
        grams = shingles(text, self.settings.shingle_size)
        if not grams:
            return None
        minhash = self._minhash(
            num_perm=self.settings.num_perm,
            seed=SEED,
            hashfunc=zlib.crc32,
            permutations=self._permutations,
            scheme=SCHEME,
        )
        minhash.update_batch(grams)
        return minhash.hashvalues.astype(np.uint32, copy=False)

    def match(self, signature: np.ndarray, keys: list[int] | None = None) -> Match | None:
        """The most similar kept row at or above the threshold, if any (LSH candidates, confirmed)."""
        candidates = self._buckets.candidates(self._buckets.keys(signature) if keys is None else keys)
        if not candidates:
            return None
        slots = np.fromiter(candidates, dtype=np.int64, count=len(candidates))
        similarity = (self._signatures[slots] == signature).mean(axis=1)
        best = int(np.argmax(similarity))
        if similarity[best] < self.settings.threshold:
            return None
        slot = int(slots[best])
        return Match(self._row_ids[slot], self._wheres[slot], float(similarity[best]))

    def add(self, row_id: str, where: str, signature: np.ndarray, keys: list[int] | None = None) -> None:
        """Keep a row: later rows are matched against it."""
        slot = len(self._row_ids)
        if slot == len(self._signatures):  # grow by doubling: amortised O(1) per row, no list of arrays
            grown = np.empty((2 * slot, self.settings.num_perm), dtype=np.uint32)
            grown[:slot] = self._signatures
            self._signatures = grown
        self._signatures[slot] = signature
        self._row_ids.append(row_id)
        self._wheres.append(where)
        self._buckets.insert(slot, self._buckets.keys(signature) if keys is None else keys)

    def check(self, row_id: str, where: str, text: str) -> Match | None:
        """Match `text` against the kept rows; when it matches none, keep it (the first copy stays)."""
        signature = self.signature(text)
        if signature is None:  # nothing to compare: an all-punctuation row is never called a copy
            return None
        keys = self._buckets.keys(signature)
        found = self.match(signature, keys)
        if found is None:
            self.add(row_id, where, signature, keys)
        return found

    def signatures_from(self, start: int) -> Iterable[tuple[str, np.ndarray]]:
        """(row_id, signature) of the rows kept from position `start` on (to store a partition's rows)."""
        for slot in range(start, len(self._row_ids)):
            yield self._row_ids[slot], self._signatures[slot]
