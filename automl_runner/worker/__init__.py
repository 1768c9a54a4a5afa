"""What runs inside a Ray task: pure functions from a candidate and the data to a small
record or a fitted model. Building the pipeline (``pipeline``), one iteration and the
refit (``iteration``), the ensembles (``ensemble``, their arithmetic in ``blending``) and
the SHAP explanation (``explain``). No MLflow, no Hydra, no Ray here.
"""
