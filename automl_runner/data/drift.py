"""Which columns of the test rows are distributed unlike the training rows: the
train/test drift guardrail's measure (data/guardrails.py).

Per column, a two-sample test and a distance: numbers by the Kolmogorov-Smirnov
statistic (the largest gap between the two cumulative distributions), categories by
the total variation distance of their value shares (half the sum of the gaps) with a
chi-squared test. A column drifts when the difference is both unlikely by chance
(p < P_VALUE) and large enough to matter (distance > DISTANCE): on thousands of rows a
test alone finds differences too small to change a score, on a few dozen a distance
alone finds chance. On seeded samples of at most SAMPLE_ROWS rows per side.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# a difference this unlikely under "same distribution" is not chance
P_VALUE = 0.001
# a tenth of the distribution moved: enough to change how a model scores
DISTANCE = 0.1
SAMPLE_ROWS = 5000


def drifted_columns(
    train: pd.DataFrame, test: pd.DataFrame, categorical: list[str], seed: int
) -> dict[str, float]:
    """The drifted columns present in both frames, largest distance first."""
    rng = np.random.default_rng(seed)
    train, test = _sample(train, rng), _sample(test, rng)
    found: dict[str, float] = {}
    for name in train.columns:
        if name not in test.columns:
            continue
        measure = _categories if name in categorical else _numbers
        distance, p = measure(train[name], test[name])
        if p < P_VALUE and distance > DISTANCE:
            found[str(name)] = distance
    return dict(sorted(found.items(), key=lambda kv: -kv[1]))


def _sample(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    if len(frame) <= SAMPLE_ROWS:
        return frame
    return frame.iloc[np.sort(rng.choice(len(frame), SAMPLE_ROWS, replace=False))]


def _numbers(a: pd.Series, b: pd.Series) -> tuple[float, float]:
    """Kolmogorov-Smirnov statistic and p-value of the non-missing values."""
    from scipy.stats import ks_2samp

    x = pd.to_numeric(a, errors="coerce").dropna().to_numpy(dtype=float)
    y = pd.to_numeric(b, errors="coerce").dropna().to_numpy(dtype=float)
    if x.size == 0 or y.size == 0:
        return 0.0, 1.0
    result = ks_2samp(x, y)
    return float(result.statistic), float(result.pvalue)


def _categories(a: pd.Series, b: pd.Series) -> tuple[float, float]:
    """Total variation distance of the value shares (missing counts as a value) and the
    chi-squared test's p-value."""
    from scipy.stats import chi2_contingency

    table = pd.concat(
        [a.fillna("<missing>").value_counts(), b.fillna("<missing>").value_counts()], axis=1
    ).fillna(0)
    counts = table.to_numpy(dtype=float).T
    if counts.shape[1] < 2:
        return 0.0, 1.0
    shares = counts / counts.sum(axis=1, keepdims=True)
    distance = 0.5 * float(np.abs(shares[0] - shares[1]).sum())
    return distance, float(chi2_contingency(counts).pvalue)
