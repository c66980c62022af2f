"""Correspondence classification (CNet, N³Net-CNet): data as Parquet, matchers, pose evaluation, training.

Every dataset source (synthetic generator, the scikit-image stereo sample, the paper's dumps) produces
:class:`~pipeline.correspondence.tables.Pair` objects and writes them through :mod:`.tables`.

Entry points for the pipeline:

- prepare: :func:`.data.prepare` (dataset name → ``data/correspondence/<name>/``), :func:`.data.load_pairs`;
- train: :class:`.training.CorrespondenceTraining` + :func:`.training.cnet_schedule` + :func:`.training.fit`
  (writes ``model.pt``);
- evaluate: :func:`.evaluate.evaluate_correspondence` (JSON-ready summary with ``map5``/``map10``/``map20``),
  :func:`.evaluate.compare_map` (paired bootstrap);
- report: :func:`.report.paper_table` (Markdown) and :func:`.report.match_figure` (PNG).
"""
