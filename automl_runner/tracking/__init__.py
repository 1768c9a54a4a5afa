"""MLflow: the store and the experiment's runs (``store``, ``models``), every name other
processes read (``schema``), the control channel of a running experiment (``control``),
what a resume reads back (``resume``), the status (``status``), the explanation's
artifacts (``explanations``) and sweeps (``sweeps``). The one layer that imports MLflow.
"""
