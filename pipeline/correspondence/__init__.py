"""Correspondence classification (CNet, N³Net-CNet): data as Parquet, matchers, pose evaluation, training.

Every dataset source (synthetic generator, the scikit-image stereo sample, the paper's dumps) produces
:class:`~pipeline.correspondence.tables.Pair` objects and writes them through :mod:`.tables`.
"""
