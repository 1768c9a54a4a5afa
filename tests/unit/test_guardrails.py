"""The data guardrails on real data: each check's status and detail, the strict mode's
error, the test/train drift hook, and what the step costs."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from conftest import GUARDRAILS, typed

from automl_runner.data import Dataset, guardrails, load
from automl_runner.data.dataset import check
from automl_runner.errors import ConfigError, DataError


def _checked(frame: pd.DataFrame, y: np.ndarray, *overrides: str) -> dict[str, guardrails.Check]:
    """The guardrails of a frame, loaded and typed as a data=file frame would be."""
    cfg = typed(overrides)
    ds = Dataset("frame", frame.copy(), np.asarray(y))
    check(ds, cfg.automl, source="frame")
    return {c.name: c for c in guardrails.evaluate(ds, cfg.automl).checks}


def _plain(n: int = 600, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """A frame with two informative but imperfect columns, one of strings, and noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    frame = pd.DataFrame(
        {
            "signal": y + rng.normal(0, 0.8, n),
            "noise": rng.normal(size=n),
            "colour": rng.choice(["red", "green", "blue"], n),
            "count": rng.integers(0, 50, n),
        }
    )
    return frame, y


def test_every_guardrail_has_a_status_on_the_default_digits():
    cfg = typed()
    report = guardrails.evaluate(load(cfg.data, cfg.automl), cfg.automl)
    checks = {c.name: c for c in report.checks}
    assert list(checks) == GUARDRAILS
    assert {c.status for c in report.checks} <= {"PASSED", "DONE", "ALERTED"}
    assert all(c.detail and "\n" not in c.detail for c in report.checks)
    assert checks["validation_split"].status == "DONE"
    assert checks["validation_split"].detail.startswith("5-fold cross-validation, stratified")
    assert checks["train_test_drift"].detail == "no test set"
    assert checks["leakage"].status == "PASSED"
    # digits' corner pixels are 0 in every image
    assert checks["constant_columns"].status == "ALERTED"
    assert checks["constant_columns"].columns == ["x0", "x32", "x39"]


def test_a_plain_frame_passes_every_column_check():
    checks = _checked(*_plain())
    assert {n: c.status for n, c in checks.items() if n != "validation_split"} == dict.fromkeys(
        GUARDRAILS[1:], "PASSED"
    )


@pytest.mark.parametrize(
    "leak",
    [
        lambda y: y * 3.0 + 1.0,  # a numeric encoding of the target
        lambda y: np.array(["class_" + str(v) for v in (y * 7) % 5]),  # as strings, reordered
    ],
    ids=["numeric", "strings"],
)
def test_a_column_that_encodes_the_target_raises_the_leakage_alert(leak):
    frame, y = _plain()
    frame["outcome"] = leak(y)
    found = _checked(frame, y)["leakage"]
    assert found.status == "ALERTED"
    assert found.columns == ["outcome"]
    assert found.detail.startswith("outcome (1.000) alone predict(s) the target")
    assert "data.drop_columns" in found.detail


def test_a_copy_of_a_regression_target_raises_the_leakage_alert():
    rng = np.random.default_rng(1)
    y = rng.normal(100, 20, 2000)
    frame = pd.DataFrame({"x": rng.normal(size=2000), "price_incl_tax": y * 1.2})
    found = _checked(frame, y, "automl=regression")["leakage"]
    assert (found.status, found.columns) == ("ALERTED", ["price_incl_tax"])


def test_identifier_columns_raise_the_id_alert():
    frame, y = _plain()
    frame.insert(0, "row_id", np.arange(1000, 1000 + len(frame)))
    frame["customer"] = [f"C{i:05d}" for i in np.random.default_rng(2).permutation(len(frame))]
    found = _checked(frame, y)["id_columns"]
    assert found.status == "ALERTED"
    assert found.columns == ["customer", "row_id"]
    assert "row_id (integers in row order)" in found.detail
    assert "customer (strings)" in found.detail
    assert found.detail.endswith("drop it (data.drop_columns)")


def test_imbalance_missing_values_cardinality_duplicates_and_constants():
    frame, y = _plain(1000)
    y = np.where(np.arange(1000) < 20, 9, y)  # class 9: 20 rows (40 with the copies)
    frame.loc[::10, "noise"] = np.nan
    frame["city"] = [f"city{i % 200}" for i in range(1000)]
    frame["version"] = 2.0
    frame = pd.concat([frame, frame.iloc[:30]], ignore_index=True)
    y = np.concatenate([y, y[:30]])
    checks = _checked(frame, y)
    imbalance = checks["class_imbalance"]
    assert imbalance.status == "ALERTED" and imbalance.columns == ["9"]
    assert imbalance.detail.startswith("class 9 has 40 rows (3.9%), 0.11 of class 2's 354: ")
    missing = checks["missing_values"]
    assert (missing.status, missing.columns) == ("DONE", ["noise"])
    assert missing.detail.endswith("noise 10.0%")
    cardinality = checks["high_cardinality"]
    assert (cardinality.status, cardinality.columns) == ("DONE", ["city"])
    assert "city (200 values)" in cardinality.detail
    duplicates = checks["duplicate_rows"]
    assert duplicates.status == "ALERTED"
    assert duplicates.detail.startswith("2.9% of the rows (30) repeat an earlier row's features")
    assert checks["constant_columns"].columns == ["version"]


def test_missing_values_without_preprocessing_are_an_alert():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(200, 3))
    X[::7, 1] = np.nan
    ds = Dataset("array", X, rng.integers(0, 2, 200))
    cfg = typed(["automl.preprocess=false"])
    found = guardrails.missing_values(guardrails.columns_of(ds.X), cfg.automl.preprocess)
    assert (found.status, found.columns) == ("ALERTED", ["x1"])
    assert "set automl.preprocess=true" in found.detail


def test_the_drift_hook_compares_train_and_test_frames():
    frame, y = _plain(2000)
    train, test = frame.iloc[:1500], frame.iloc[1500:].copy()
    assert guardrails.train_test_drift(train, None, ["colour"], 0).detail == "no test set"
    same = guardrails.train_test_drift(train, test, ["colour"], 0)
    assert same.status == "PASSED"
    test["noise"] += 1.0
    test["colour"] = "red"
    moved = guardrails.train_test_drift(train, test, ["colour"], 0)
    assert moved.status == "ALERTED"
    assert moved.columns == ["colour", "noise"]


def test_strict_makes_the_first_alert_a_one_line_error():
    frame, y = _plain()
    frame.insert(0, "row_id", np.arange(len(frame)))
    cfg = typed(["automl.guardrails=strict"])
    ds = Dataset("frame", frame, y)
    check(ds, cfg.automl, source="data.path=churn.csv")
    report = guardrails.evaluate(ds, cfg.automl)
    guardrails.enforce(report, "warn", "data.path=churn.csv")
    with pytest.raises(DataError) as raised:
        guardrails.enforce(report, cfg.automl.guardrails, "data.path=churn.csv")
    message = str(raised.value)
    assert message.startswith(
        "data.path=churn.csv: guardrail id_columns ALERTED: row_id (integers in row order) "
        "unique per row: an identifier, not a feature; drop it (data.drop_columns)"
    )
    assert message.endswith("(automl.guardrails=strict; automl.guardrails=warn runs anyway)")
    assert "\n" not in message


def test_the_guardrails_setting_is_validated():
    from automl_runner.config.validate import validate

    with pytest.raises(ConfigError, match=r"automl.guardrails=loud: allowed: warn, strict, off"):
        validate(typed(["automl.guardrails=loud"]))


def _timed(ds: Dataset, automl) -> float:
    started = time.perf_counter()
    guardrails.evaluate(ds, automl)
    return time.perf_counter() - started


def test_the_guardrails_cost_little_on_digits_and_on_50000_rows():
    cfg = typed()
    digits = load(cfg.data, cfg.automl)
    guardrails.evaluate(digits, cfg.automl)  # imports (scikit-learn's trees) once
    on_digits = _timed(digits, cfg.automl)
    rng = np.random.default_rng(4)
    n = 50_000
    frame = pd.DataFrame({f"num{j}": rng.normal(size=n) for j in range(15)})
    frame["count"] = rng.integers(0, 100, n)
    frame["city"] = rng.choice([f"city{i}" for i in range(300)], n)
    frame["colour"] = rng.choice(["red", "green", "blue"], n)
    frame.loc[::13, "num3"] = np.nan
    large = Dataset("large", frame, rng.integers(0, 2, n))
    check(large, cfg.automl, source="large")
    on_large = _timed(large, cfg.automl)
    print(f"guardrails: digits {on_digits:.3f} s, 50,000 x 18 frame {on_large:.3f} s")
    assert on_digits < 1.0
    assert on_large < 5.0
