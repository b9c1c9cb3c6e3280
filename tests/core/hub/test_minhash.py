"""The compiled MinHash kernels: estimates, stability of what is stored, and earliest-wins marking
checked against a plain-Python reference of the same algorithm."""

from __future__ import annotations

import random

import numpy as np

from personahub_dagster.core.hub import minhash


def _random_pair(rng: random.Random, vocab: list[str]) -> tuple[set[str], set[str]]:
    a = set(rng.sample(vocab, 40))
    b = set(rng.sample(sorted(a), rng.randint(5, 40))) | set(rng.sample(vocab, rng.randint(0, 20)))
    return a, b


def test_signatures_estimate_jaccard_without_bias():
    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(500)]
    errors = []
    for _ in range(300):
        a, b = _random_pair(rng, vocab)
        sa, sb = minhash.signatures([" ".join(a), " ".join(b)])
        errors.append(float((sa == sb).mean()) - len(a & b) / len(a | b))
    # 128 permutations: the estimate's standard deviation is at most sqrt(0.25 / 128) ≈ 0.044
    assert abs(np.mean(errors)) < 0.01
    assert np.std(errors) < 0.05


def test_a_signature_depends_on_the_word_set_only():
    sigs = minhash.signatures(
        [
            "A pediatric nurse who works night shifts.",
            "works NIGHT shifts, a pediatric nurse who works",  # order, casing, repeats, punctuation
            "A pediatric nurse who works day shifts.",
        ]
    )
    assert (sigs[0] == sigs[1]).all()
    assert not (sigs[0] == sigs[2]).all()
    assert sigs.dtype == np.uint32 and sigs.shape == (3, 128)


def test_blocks_and_batches_do_not_change_signatures():
    texts = [f"persona {i} who likes topic {i % 7} and {i % 11}" for i in range(250)]
    whole = minhash.signatures(texts)
    assert (minhash.signatures(texts, block=37) == whole).all()
    assert (minhash.signatures(texts[100:]) == whole[100:]).all()


def test_stored_signatures_are_stable():
    """Saved hubs keep signatures: if this fails, the hashing changed — bump ``minhash.ALGORITHM`` so
    that old states are rebuilt instead of silently missing duplicates, then update these numbers."""
    sig = minhash.signatures(["A pediatric nurse who works night shifts."])
    assert minhash.ALGORITHM == "fnv1a64-splitmix64/multiply-add-shift/v1"
    assert sig[0, :6].tolist() == [70766036, 268074166, 294826898, 224699475, 1906491381, 95366187]
    assert minhash.band_keys(sig, 8)[0, :3].tolist() == [
        1011518475444452947,
        2388912190249996651,
        16665571036136853938,
    ]


def test_unicode_words_count_and_empty_texts_take_no_part():
    sigs = minhash.signatures(["", "!!! ---", "Ünïcode wörds 東京", "ünïcode WÖRDS 東京", None])
    assert minhash.has_words(sigs).tolist() == [False, False, True, True, False]
    assert (sigs[2] == sigs[3]).all()
    dup_of, _ = minhash.earliest_wins(sigs, 8, 0.9)
    assert dup_of.tolist() == [-1, -1, -1, 2, -1]  # empty texts are not copies of each other


def _reference(sigs: np.ndarray, rows_per_band: int, threshold: float) -> list[int]:
    """Earliest-wins in plain Python: the same LSH candidates, verified, best kept match (ties: earliest)."""
    bands = minhash.band_keys(sigs, rows_per_band)
    index: dict[int, list[int]] = {}
    dup_of = []
    for i in range(len(sigs)):
        candidates = sorted({j for key in bands[i].tolist() for j in index.get(key, [])})
        sims = [(float((sigs[i] == sigs[j]).mean()), -j) for j in candidates]
        best = max(sims, default=(0.0, 1))
        if sims and best[0] >= threshold:
            dup_of.append(-best[1])
        else:
            dup_of.append(-1)
            for key in bands[i].tolist():
                index.setdefault(key, []).append(i)
    return dup_of


def test_earliest_wins_matches_the_reference():
    rng = random.Random(3)
    vocab = [f"w{i}" for i in range(300)]
    texts: list[str] = []
    for _ in range(400):
        if texts and rng.random() < 0.4:
            words = rng.choice(texts).split()
            if rng.random() < 0.7:
                words.pop(rng.randrange(len(words)))  # a near-copy of an earlier text
            texts.append(" ".join(words))
        else:
            texts.append(" ".join(rng.sample(vocab, rng.randint(15, 30))))
    sigs = minhash.signatures(texts)
    dup_of, sim = minhash.earliest_wins(sigs, 8, 0.9)
    assert dup_of.tolist() == _reference(sigs, 8, 0.9)
    marked = dup_of >= 0
    assert marked.sum() > 50  # the set does exercise the duplicate path
    assert (dup_of[marked] < np.flatnonzero(marked)).all()  # always an earlier row …
    assert (dup_of[dup_of[marked]] == -1).all()  # … that was kept
    assert (sim[marked] >= 0.9).all()


def test_many_copies_of_one_text_are_marked_against_the_first():
    sigs = minhash.signatures(["the same persona, again and again"] * 5000 + ["a different one entirely"])
    dup_of, sim = minhash.earliest_wins(sigs, 8, 0.9)
    assert (dup_of[1:5000] == 0).all() and dup_of[0] == -1 and dup_of[5000] == -1
    assert (sim[1:5000] == 1.0).all()


def test_rows_not_eligible_are_neither_marked_nor_kept():
    sigs = minhash.signatures(["alpha beta gamma delta"] * 3)
    dup_of, _ = minhash.earliest_wins(sigs, 8, 0.9, eligible=np.array([False, True, True]))
    assert dup_of.tolist() == [-1, -1, 1]
