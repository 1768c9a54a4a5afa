"""The entry points: the ``automl-runner`` command (``cli``), ``automl-ctl`` (``ctl``),
submitting to and steering a Ray cluster (``remote``) and the sweep summary callback
(``sweep``). They compose the config and hand off; nothing imports them.
"""
