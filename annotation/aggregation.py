"""From raw votes to per-pair counts and labels. Pure functions on pandas/numpy data.

Protocols of docs/design.md: one vote's outcome p(a better) is 1, 0.5 (similar)
or 0; the DiffIQA majority is the most frequent of a / similar / b, and no label
("none") when the top two tie (so three different answers give none).
"""

import numpy as np
import pandas as pd

NONE = "none"
ANSWERS = ("a", "similar", "b")


def pair_counts(votes: pd.DataFrame, pair_ids: pd.Series) -> pd.DataFrame:
    """Counts of ``preferred`` per pair: columns n_a, n_similar, n_b, n_votes.

    ``votes`` holds the votes that count (columns pair_id, preferred); every id in
    ``pair_ids`` gets a row, zero when it has no votes (votes on other pairs are ignored).
    """
    index = pd.Index(pair_ids, name="pair_id")
    position = index.get_indexer(votes["pair_id"])
    answer = pd.Categorical(votes["preferred"], categories=ANSWERS).codes
    keep = (position >= 0) & (answer >= 0)
    flat = np.bincount(position[keep] * 3 + answer[keep], minlength=3 * len(index))
    counts = flat.reshape(len(index), 3).astype("int64")
    out = pd.DataFrame(counts, index=index, columns=["n_a", "n_similar", "n_b"])
    out["n_votes"] = counts.sum(axis=1)
    return out


def p_a(n_a: np.ndarray, n_similar: np.ndarray, n_votes: np.ndarray) -> np.ndarray:
    """Mean outcome for a (similar counts 0.5); NaN for pairs without votes."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_votes > 0, (n_a + 0.5 * n_similar) / n_votes, np.nan)


def majority(n_a: np.ndarray, n_similar: np.ndarray, n_b: np.ndarray) -> np.ndarray:
    """The DiffIQA majority label per pair: "a", "similar", "b" or "none"."""
    counts = np.stack([n_a, n_similar, n_b], axis=1)
    labels = np.array(["a", "similar", "b"], dtype=object)
    if len(counts) == 0:
        return np.array([], dtype=object)
    top = counts.max(axis=1)
    tied = (counts == top[:, None]).sum(axis=1) > 1
    result = labels[counts.argmax(axis=1)]
    result[tied | (top == 0)] = NONE
    return result


def decided(n_a, n_similar, n_b, n_due):
    """Whether the majority label can no longer change with ``n_due`` more votes: the
    leading answer's count exceeds the runner-up's by more than ``n_due`` (with three
    votes, the first two agree). Then every way the remaining votes can fall gives the
    label the votes so far give (``majority``), which is never "none". Scalars or arrays;
    ``vote.sql`` computes the same in SQL."""
    counts = np.stack(np.broadcast_arrays(n_a, n_similar, n_b), axis=-1)
    ordered = np.sort(counts, axis=-1)
    return ordered[..., 2] - ordered[..., 1] > np.asarray(n_due)
