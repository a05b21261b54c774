"""Making runs: a grid of them (grid.py), one run trained, frozen, evaluated and stored
(runner.py), every model of a grid checked before anything trains (preflight.py), the one
training loop (train.py), the evaluation pipeline over the evaluators of
bench/evaluators/ (evaluate.py), what a training verb is pointed at (session.py), where a run ran
(env.py), and reproducibility: stored runs retrained and compared (verify.py)."""
