"""Studies: Optuna over the single-run path (tune.py), its storage and workers (studydb.py), the
search spaces (space.py), and a fair comparison at an equal tuning budget (compare.py). Every
trial is an ordinary run in the store."""
