"""Whether the images' copyright strings alone predict the cell: a leak in the data itself.

User-contributed panoramas print the photographer's name in a strip along the bottom;
Google's own say "© Google". When photographers work in one region each, a model can
read the name instead of the landscape. This check needs no model: a cross-validated
lookup from name to cell is scored against always guessing the most common cell.

The lookup (fit on the training folds): each name predicts the cell where it was seen
most often, the generic strings ("© Google", empty, missing) counting together as one
more name; a name not seen in training gets the training folds' most common cell. Folds
never split a group (the images of one panorama), so a name must recur across panoramas
to help.

A leak is called when the lookup's accuracy beats the baseline, the share of the most
common cell, by at least ``MARGIN``, and a permutation test says it is no luck (p below
``ALPHA``): the names are dealt out to other panoramas at random, ``PERMUTATIONS`` times,
and the lookup is fit and scored again on the same folds.

The baseline is measured in-sample on purpose: a cross-validated majority guess scores
below chance on balanced cells (the fold's training majority is, by construction, rarer
in its test part), which would flatter the lookup: names unrelated to the cell "beat"
it by five points.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from geotag.errors import DataError, InputError

MARGIN = 0.05
"""The accuracy gain over the majority baseline that counts as a leak."""
ALPHA = 0.05
"""The permutation test's significance level."""
PERMUTATIONS = 200
GENERIC_NAMES = frozenset({"", "google", "google llc", "google inc", "unknown"})
"""Copyright strings, once normalised, that name no photographer."""
_GENERIC = "\x00generic"  # one token for every generic or missing string

_NOISE = re.compile(r"©|\(c\)|\bcopyright\b|\b(?:19|20)\d\d\b|[^\w\s]", re.IGNORECASE)


def normalise_copyright(value: object) -> str:
    """``"© 2023 Ann Rao"`` -> ``"ann rao"``; missing values (None, NaN) -> ``""``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    text = _NOISE.sub(" ", str(value))
    return " ".join(text.casefold().split())


def is_generic(name: str) -> bool:
    """Whether a normalised copyright string names no photographer."""
    return name in GENERIC_NAMES


def copyright_leak(
    copyrights: Sequence[str | None],
    cells: Sequence[int],
    folds: int = 5,
    seed: int = 0,
    groups: Sequence[object] | None = None,
    *,
    margin: float = MARGIN,
    permutations: int = PERMUTATIONS,
) -> dict[str, Any]:
    """Whether ``copyrights`` predict ``cells`` better than chance; JSON-ready figures.

    ``groups`` (one id per image, e.g. the panorama id) keeps a panorama's images in one
    fold; without it every image is its own group. Returns the lookup's out-of-fold
    accuracy, the majority baseline, the mean accuracy and p-value of the permutation
    test, the share of images with a named (non-generic) copyright, the number of
    distinct names, how many of the names seen on two or more images stay inside one
    cell (and the share of images carrying such a name), and ``leaks``.
    """
    count = len(cells)
    if len(copyrights) != count:
        raise InputError(f"got {len(copyrights)} copyright values for {count} cells")
    if groups is not None and len(groups) != count:
        raise InputError(f"got {len(groups)} groups for {count} images")
    if folds < 2:
        raise InputError(f"cross-validation needs at least 2 folds; got {folds}")
    if not 0.0 <= margin < 1.0:
        raise InputError(f"margin must lie in [0, 1); got {margin:g}")
    if permutations < 1:
        raise InputError(f"permutations must be at least 1; got {permutations}")

    names = [normalise_copyright(c) for c in copyrights]
    named = np.array([not is_generic(n) for n in names], dtype=bool)
    tokens_text = [n if not is_generic(n) else _GENERIC for n in names]
    _, tokens = np.unique(np.asarray(tokens_text, dtype=object), return_inverse=True)
    _, labels = np.unique(np.asarray(cells, dtype=np.int64), return_inverse=True)
    group_ids = np.arange(count) if groups is None else _codes(groups)
    n_groups = int(group_ids.max()) + 1 if count else 0
    if n_groups < 2:
        raise DataError(
            f"the copyright check needs images from at least 2 panoramas; got {n_groups}"
        )

    splits = min(folds, n_groups)
    from sklearn.model_selection import GroupKFold

    splitter = GroupKFold(n_splits=splits, shuffle=True, random_state=seed)
    fold_rows = [test for _, test in splitter.split(np.zeros(count), labels, group_ids)]
    accuracy = _lookup_accuracy(tokens, labels, fold_rows)
    baseline = float(np.bincount(labels).max() / count)

    # The null: the same lookup, the same folds, with names dealt out to other panoramas.
    rng = np.random.default_rng(seed)
    first = np.unique(group_ids, return_index=True)[1]
    group_token = tokens[first]
    null = np.array(
        [
            _lookup_accuracy(rng.permutation(group_token)[group_ids], labels, fold_rows)
            for _ in range(permutations)
        ]
    )
    p_value = (int((null >= accuracy).sum()) + 1) / (permutations + 1)
    leaks = accuracy >= baseline + margin and p_value < ALPHA

    return {
        "images": count,
        "groups": n_groups,
        "folds": splits,
        "grouped": groups is not None,
        "accuracy": accuracy,
        "baseline": baseline,
        "difference": accuracy - baseline,
        "null_accuracy": float(null.mean()),
        "p_value": p_value,
        "permutations": permutations,
        "margin": float(margin),
        "alpha": ALPHA,
        "leaks": bool(leaks),
        **_name_figures(tokens, named, labels),
    }


def _codes(values: Sequence[object]) -> np.ndarray:
    """Dense integer codes 0..G-1 for any hashable ids."""
    index: dict[object, int] = {}
    return np.array([index.setdefault(v, len(index)) for v in values], dtype=np.int64)


def _lookup_accuracy(tokens: np.ndarray, labels: np.ndarray, fold_rows: list[np.ndarray]) -> float:
    """Out-of-fold accuracy of the name -> majority cell lookup."""
    correct = 0
    n_tokens = int(tokens.max()) + 1
    everything = np.arange(len(labels))
    for test in fold_rows:
        train = np.setdiff1d(everything, test, assume_unique=True)
        majority = int(np.bincount(labels[train]).argmax())
        lookup = _majority_cell_by_token(tokens[train], labels[train], n_tokens)
        guess = lookup[tokens[test]]
        correct += int((np.where(guess >= 0, guess, majority) == labels[test]).sum())
    return correct / len(labels)


def _majority_cell_by_token(tokens: np.ndarray, labels: np.ndarray, n_tokens: int) -> np.ndarray:
    """For each token, the label it was seen with most (ties: the smallest); -1 if unseen."""
    lookup = np.full(n_tokens, -1, dtype=np.int64)
    if len(tokens) == 0:
        return lookup
    width = int(labels.max()) + 1
    pairs, counts = np.unique(tokens * width + labels, return_counts=True)
    token, label = pairs // width, pairs % width
    order = np.lexsort((label, -counts, token))  # by token, then most seen, then smallest
    first = np.ones(len(order), dtype=bool)
    first[1:] = token[order][1:] != token[order][:-1]
    best = order[first]
    lookup[token[best]] = label[best]
    return lookup


def _name_figures(tokens: np.ndarray, named: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    named_tokens = tokens[named]
    distinct = np.unique(named_tokens)
    images_per_name = np.bincount(named_tokens, minlength=int(tokens.max()) + 1)
    recurring = distinct[images_per_name[distinct] >= 2]
    # cells per name: the distinct (name, cell) pairs, counted per name
    width = int(labels.max()) + 1 if len(labels) else 1
    pairs = np.unique(named_tokens * width + labels[named])
    cells_per_name = np.bincount(pairs // width, minlength=len(images_per_name))
    confined = recurring[cells_per_name[recurring] == 1]
    confined_images = int(images_per_name[confined].sum())
    count = len(tokens)
    return {
        "named_share": float(named.mean()) if count else 0.0,
        "distinct_names": len(distinct),
        "recurring_names": len(recurring),
        "names_in_one_cell": len(confined),
        "images_with_confined_names": confined_images / count if count else 0.0,
    }
