"""The engine: Ray. Connecting to the compute (``compute``), running iterations as Ray
tasks (``ray_executor``) or in this process (``serial``) behind one protocol
(``executor``), and the Ray Jobs API (``jobs``). The one layer that imports Ray.
"""
