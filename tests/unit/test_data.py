from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
import pytest
from conftest import typed
from sklearn.datasets import load_digits

from automl_runner.config.settings import data_name
from automl_runner.data import load
from automl_runner.errors import ConfigError, DataError

SEED_GET_DATA = """
from sklearn import datasets
from scipy import sparse
import numpy as np

def get_data():

    digits = datasets.load_digits()
    X_digits = digits.data[10:,:]
    y_digits = digits.target[10:]

    return { "X" : X_digits, "y" : y_digits }
"""


def _cfg(*overrides):
    return typed(overrides)


def _script(tmp_path, body: str, name: str = "get_data.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def test_default_digits_is_the_seed_set():
    cfg = _cfg()
    ds = load(cfg.data, cfg.automl)
    digits = load_digits()
    np.testing.assert_array_equal(ds.X, digits.data[10:, :])
    np.testing.assert_array_equal(ds.y, digits.target[10:])


def test_seed_get_data_script_loads_unchanged(tmp_path):
    path = _script(tmp_path, SEED_GET_DATA)
    cfg = _cfg("data=script", f"data.path={path}")
    ds = load(cfg.data, cfg.automl)
    assert ds.X.shape == (1787, 64)
    # no data.name: the data set is "script", the experiment named after the script's
    # folder (a get_data.py) or its stem
    assert ds.name == "script"
    assert data_name(cfg.data) == tmp_path.name
    other = _script(tmp_path, SEED_GET_DATA, name="churn_data.py")
    assert data_name(_cfg("data=script", f"data.path={other}").data) == "churn_data"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "def get_data():\n    raise KeyError('blob store unreachable')\n",
            "get_data() raised KeyError: 'blob store unreachable'",
        ),
        ("x = 1\n", "defines no get_data() function"),
        (
            "def get_data():\n    return (1, 2)\n",
            "get_data() returned tuple; expected a dict with keys X and y",
        ),
        (
            "import numpy as np\ndef get_data():\n    return {'X': np.zeros((4, 2))}\n",
            "get_data() returned no y",
        ),
        (
            "import numpy as np\ndef get_data():\n    return {'y': np.zeros(4)}\n",
            "get_data() returned no X",
        ),
        (
            "import numpy as np\ndef get_data():\n    return {'X': np.zeros((6, 2)), 'y': np.arange(5) % 2}\n",
            "X has 6 rows but y has 5; they must match",
        ),
        (
            "import numpy as np\ndef get_data():\n    return {'X': np.zeros((6, 2)), 'y': np.arange(6) % 2, 'X_tset': 1}\n",
            "unknown key 'X_tset'",
        ),
        (
            "import numpy as np\ndef get_data():\n    return {'X': np.zeros(6), 'y': np.arange(6) % 2}\n",
            "X has shape (6,); expected 2-D",
        ),
        (
            "import nonexistent_module_xyz\n",
            "importing the script raised ModuleNotFoundError: No module named 'nonexistent_module_xyz'",
        ),
        (
            "import numpy as np\ndef get_data():\n    X = np.zeros((6, 3)); X[2, 1] = np.inf\n"
            "    return {'X': X, 'y': np.arange(6) % 2}\n",
            "X column 'x1' has 1 infinite value(s); replace them with NaN",
        ),
        (
            "import numpy as np, pandas as pd\ndef get_data():\n"
            "    X = pd.DataFrame({'age': [1.0, 2, 3, 4, 5, 6], 'debt': [0, -np.inf, 1, 2, np.inf, 3]})\n"
            "    return {'X': X, 'y': np.arange(6) % 2}\n",
            "X column 'debt' has 2 infinite value(s); replace them with NaN",
        ),
    ],
)
def test_bad_scripts_give_one_line(tmp_path, body, message):
    path = _script(tmp_path, body)
    cfg = _cfg("data=script", f"data.path={path}")
    with pytest.raises(DataError) as info:
        load(cfg.data, cfg.automl)
    assert message in str(info.value)
    assert str(info.value).startswith(f"data.path={path}: ")
    assert "\n" not in str(info.value)


def test_fewer_rows_per_class_than_folds_is_one_warning_not_a_refusal(tmp_path, caplog):
    path = _script(
        tmp_path,
        """
        import numpy as np
        def get_data():
            y = ["a"] * 26 + ["rare"] * 3 + ["single"]
            return {"X": np.random.rand(30, 3), "y": np.array(y)}
    """,
    )
    cfg = _cfg("data=script", f"data.path={path}")
    with caplog.at_level("WARNING", logger="automl_runner.data"):
        ds = load(cfg.data, cfg.automl)
    assert len(ds.y) == 30
    warned = [
        r.getMessage() for r in caplog.records if "fewer rows than the 5 folds" in r.getMessage()
    ]
    assert warned == [
        f"data.path={path}: class(es) with fewer rows than the 5 folds: "
        "'rare' (3), 'single' (1); not every fold holds them"
    ]


def test_a_single_row_class_under_a_holdout_is_refused(tmp_path):
    path = _script(
        tmp_path,
        """
        import numpy as np
        def get_data():
            return {"X": np.random.rand(30, 3), "y": np.array(["a"] * 29 + ["single"])}
    """,
    )
    cfg = _cfg(
        "data=script",
        f"data.path={path}",
        "automl.n_cross_validations=null",
        "automl.validation_size=0.2",
    )
    with pytest.raises(DataError, match="class 'single' has a single row"):
        load(cfg.data, cfg.automl)


def test_continuous_target_under_classification_points_to_regression(tmp_path):
    path = _script(
        tmp_path,
        """
        import numpy as np
        def get_data():
            return {"X": np.random.rand(50, 3), "y": np.random.rand(50)}
    """,
    )
    cfg = _cfg("data=script", f"data.path={path}")
    with pytest.raises(ConfigError, match="use automl=regression"):
        load(cfg.data, cfg.automl)


def _frame(n=60, seed=0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "age": rng.normal(40, 10, n),
            "city": rng.choice(["paris", "rome", "oslo"], n),
            "plan": rng.choice(["a", "b"], n),
            "score": rng.integers(0, 100, n).astype(float),
        }
    )
    frame.loc[::7, "age"] = np.nan
    frame.loc[::5, "city"] = None
    frame["label"] = np.where(frame["score"] > 50, "yes", "no")
    return frame


def test_csv_with_categories_and_missing_values(tmp_path):
    path = tmp_path / "people.csv"
    _frame().to_csv(path, index=False)
    cfg = _cfg("data=file", f"data.path={path}", "data.target=label")
    ds = load(cfg.data, cfg.automl)
    assert ds.name == "people"
    assert ds.categorical == ["city", "plan"]
    assert ds.numeric == ["age", "score"]
    assert set(ds.y) == {"yes", "no"}
    assert ds.summary("classification")["missing_values"] > 0


def test_nullable_pandas_dtypes_load_into_what_the_pipeline_can_fit(tmp_path):
    # Parquet keeps pandas' nullable dtypes, whose missing value is pd.NA: the imputers
    # cannot test pd.NA for missing, so every iteration failed on such a file
    rng = np.random.default_rng(0)
    n = 60
    frame = pd.DataFrame(
        {
            "count": pd.array(rng.integers(0, 5, n), dtype="Int64"),
            "flag": pd.array(rng.random(n) > 0.5, dtype="boolean"),
            "city": pd.array(rng.choice(["oslo", "rome", None], n), dtype="string"),
            "tier": pd.Categorical(rng.choice(["a", "b", None], n)),
        }
    )
    frame.loc[::7, ["count", "flag"]] = pd.NA
    frame["label"] = np.where(rng.random(n) > 0.5, "yes", "no")
    path = tmp_path / "nullable.parquet"
    frame.to_parquet(path, index=False)
    cfg = _cfg("data=file", f"data.path={path}", "data.target=label")
    ds = load(cfg.data, cfg.automl)
    assert ds.numeric == ["count", "flag"] and ds.categorical == ["city", "tier"]
    from automl_runner.worker.pipeline import _prepare

    Xt = _prepare(ds.numeric, ds.categorical, dataframe=True).fit_transform(ds.X)
    assert Xt.shape[0] == n and np.isfinite(Xt).all()


def test_date_columns_become_numbers_in_the_pipeline(tmp_path):
    # ISO date strings (a CSV), a datetime dtype with a time zone (Parquet): both are
    # dates; a column with one value that is not a date stays categorical
    rng = np.random.default_rng(0)
    n = 40
    days = pd.date_range("2023-01-01", periods=n, freq="37h")
    frame = pd.DataFrame(
        {
            "signup": days.strftime("%Y-%m-%d"),
            "seen": days.tz_localize("Europe/Oslo"),
            "code": [*days.strftime("%Y-%m-%d")[:-1], "unknown"],
            "amount": rng.normal(size=n),
            "label": rng.choice(["yes", "no"], n),
        }
    )
    frame.loc[[2, 5], "signup"] = None
    path = tmp_path / "visits.parquet"
    frame.to_parquet(path, index=False)
    cfg = _cfg("data=file", f"data.path={path}", "data.target=label")
    ds = load(cfg.data, cfg.automl)
    assert ds.dates == ["signup", "seen"]
    assert ds.categorical == ["code"] and ds.numeric == ["amount"]
    assert ds.summary("classification")["date_columns"] == 2
    # a zone is converted to UTC and dropped (MLflow's model signature takes naive times)
    assert ds.X["seen"].dt.tz is None and ds.X["seen"][0] == pd.Timestamp("2022-12-31 23:00")
    from automl_runner.worker.features import feature_sources
    from automl_runner.worker.pipeline import _prepare

    prepare = _prepare(ds.numeric, ds.categorical, True, ds.dates).fit(ds.X)
    Xt = prepare.transform(ds.X)
    assert np.isfinite(Xt).all()
    names = list(prepare.get_feature_names_out())
    year, days_col = names.index("signup_year"), names.index("signup_days")
    assert Xt[0, year] == 2023 and Xt[1, days_col] - Xt[0, days_col] == 1.0  # 37 h: 1 day
    assert Xt[:, names.index("seen_hour")].max() > 0  # the times of day are kept
    flag = names.index("missingindicator_signup_year")  # a missing date: imputed, flagged
    assert list(np.flatnonzero(Xt[:, flag])) == [2, 5]
    # the explanation maps every part and flag back to its date column
    from sklearn.pipeline import Pipeline

    _, sources = feature_sources(Pipeline([("prepare", prepare)]), list(ds.X.columns))
    assert sources.count("signup") == 7 + 7 and sources.count("seen") == 7


def test_time_spans_are_refused_with_the_column(tmp_path):
    frame = _frame()
    frame["waited"] = pd.to_timedelta(np.arange(len(frame)), unit="h")
    path = tmp_path / "waits.parquet"
    frame.to_parquet(path, index=False)
    cfg = _cfg("data=file", f"data.path={path}", "data.target=label")
    with pytest.raises(DataError, match="column 'waited' holds time spans"):
        load(cfg.data, cfg.automl)


def test_parquet_regression_drops_rows_without_target(tmp_path):
    frame = _frame()
    frame["price"] = frame["score"] * 2.5
    frame.loc[3, "price"] = np.nan
    path = tmp_path / "homes.parquet"
    frame.drop(columns=["label"]).to_parquet(path)
    cfg = _cfg(
        "data=file",
        f"data.path={path}",
        "data.target=price",
        "automl=regression",
        "data.drop_columns=[score]",
    )
    ds = load(cfg.data, cfg.automl)
    assert ds.n_rows == len(frame) - 1
    assert "score" not in ds.X.columns and ds.y.dtype == float


def test_missing_target_column_lists_the_columns(tmp_path):
    path = tmp_path / "people.csv"
    _frame().to_csv(path, index=False)
    cfg = _cfg("data=file", f"data.path={path}", "data.target=Exited")
    with pytest.raises(ConfigError) as info:
        load(cfg.data, cfg.automl)
    assert (
        str(info.value)
        == "data.target=Exited: no such column in people.csv; columns: age, city, plan, score, label"
    )


def test_strings_without_preprocess_are_refused(tmp_path):
    path = tmp_path / "people.csv"
    _frame().to_csv(path, index=False)
    cfg = _cfg("data=file", f"data.path={path}", "data.target=label", "automl.preprocess=false")
    with pytest.raises(
        ConfigError, match="automl.preprocess=False: .*city, plan.*set automl.preprocess=true"
    ):
        load(cfg.data, cfg.automl)


def test_regression_target_must_be_numeric(tmp_path):
    path = tmp_path / "people.csv"
    _frame().to_csv(path, index=False)
    cfg = _cfg("data=file", f"data.path={path}", "data.target=label", "automl=regression")
    with pytest.raises(ConfigError, match="non-numeric values; use automl=classification"):
        load(cfg.data, cfg.automl)


def test_dataset_size_counts_x_and_x_valid_whatever_their_type():
    from scipy import sparse

    from automl_runner.data import Dataset

    X = np.zeros((100, 5))
    assert Dataset("a", X, np.zeros(100)).nbytes == 4000
    assert Dataset("a", X, np.zeros(100), X_valid=X[:10]).nbytes == 4400
    frame = pd.DataFrame({"a": np.zeros(10), "b": np.arange(10, dtype="int32")})
    assert Dataset("a", frame, np.zeros(10)).nbytes == 120
    csr = sparse.random(50, 20, density=0.1, format="csr", random_state=0)
    assert Dataset("a", csr, np.zeros(50)).nbytes == (
        csr.data.nbytes + csr.indices.nbytes + csr.indptr.nbytes
    )


def test_no_class_with_as_many_rows_as_folds_is_one_line_saying_what_to_change(tmp_path):
    csv = tmp_path / "rare.csv"
    csv.write_text("a,label\n" + "".join(f"{i},c{i}\n" for i in range(5)))
    cfg = _cfg("data=file", f"data.path={csv}", "data.target=label")
    with pytest.raises(DataError) as info:
        load(cfg.data, cfg.automl)
    assert str(info.value) == (
        f"data.path={csv}: no class has 5 rows for automl.n_cross_validations=5; rows per "
        "class: 'c0' (1), 'c1' (1), 'c2' (1), 'c3' (1), 'c4' (1); hold out rows instead "
        "(automl.n_cross_validations=null automl.validation_size=0.2, two rows per class), "
        "or drop the classes with few rows"
    )


def test_rare_classes_give_our_warning_not_scikit_learns(tmp_path, caplog):
    import warnings

    from automl_runner.experiment.setup import prepare

    path = _script(
        tmp_path,
        """
        import numpy as np
        def get_data():
            return {"X": np.random.rand(30, 3), "y": np.array(["a"] * 29 + ["single"])}
    """,
    )
    cfg = _cfg("data=script", f"data.path={path}")
    ds = load(cfg.data, cfg.automl)
    with warnings.catch_warnings(record=True) as raw:
        warnings.simplefilter("always")
        prepare(ds, cfg.automl)
    assert [str(w.message) for w in raw] == []


def test_an_all_missing_column_is_one_warning_of_ours(tmp_path, caplog):
    csv = tmp_path / "t.csv"
    csv.write_text("a,empty,label\n" + "".join(f"{i},,{i % 2}\n" for i in range(10)))
    cfg = _cfg("data=file", f"data.path={csv}", "data.target=label")
    with caplog.at_level("WARNING", logger="automl_runner.data"):
        load(cfg.data, cfg.automl)
    assert [r.getMessage() for r in caplog.records] == [
        f"data.path={csv}: column(s) with no value (all missing): 'empty'; they carry no "
        "information, drop them"
    ]


def test_duplicate_column_names_are_one_line(tmp_path):
    csv = tmp_path / "t.csv"
    csv.write_text("a,a,label\n" + "".join(f"{i},{i},{i % 2}\n" for i in range(10)))
    cfg = _cfg("data=file", f"data.path={csv}", "data.target=label")
    with pytest.raises(DataError, match="the header names column 'a' twice; column names"):
        load(cfg.data, cfg.automl)
    path = _script(
        tmp_path,
        """
        import numpy as np, pandas as pd
        def get_data():
            X = pd.DataFrame(np.ones((6, 3)), columns=["a", "b", "a"])
            return {"X": X, "y": np.arange(6) % 2}
    """,
    )
    cfg = _cfg("data=script", f"data.path={path}")
    with pytest.raises(DataError, match="X names column 'a' twice; column names must be unique"):
        load(cfg.data, cfg.automl)
