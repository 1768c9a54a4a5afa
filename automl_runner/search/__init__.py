"""The search: strategies behind ask/tell (``strategy``: ``tpe``, ``random_search``), when
it stops (``stopping``) and the order results are told in (``ordering``). Neither Ray
nor MLflow: it never learns where or how many iterations run.
"""
