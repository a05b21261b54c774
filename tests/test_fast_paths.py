"""The evaluator's fast paths give the reference implementations' answers (results/speed.md times
them): the hand-written L-BFGS probe is scikit-learn's LogisticRegression at the same objective,
and the batched cosine kNN is scikit-learn's KNeighborsClassifier."""

import numpy as np
import pytest
import torch

from bench.evaluators import knn, linear

sklearn = pytest.importorskip("sklearn")


def _blobs(n, d, k, seed, spread=1.0):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(k, d, generator=g) * spread
    y = torch.randint(0, k, (n,), generator=g)
    return means[y] + torch.randn(n, d, generator=g), y


@pytest.mark.parametrize("wd", [1e-2, 1e-4])
def test_linear_probe_is_sklearn_logistic_regression(wd):
    from sklearn.linear_model import LogisticRegression

    x, y = _blobs(3000, 24, 6, seed=0, spread=0.4)
    xt, yt = _blobs(2000, 24, 6, seed=1, spread=0.4)
    x, xt = x.double(), xt.double()  # float64 on both sides: the comparison is of solvers, not rounding
    w = linear.fit_logreg(x, y, 6, wd, 1000)
    # ours: mean log-loss + wd/2 ||W||^2; sklearn: C * summed log-loss + 1/2 ||W||^2
    clf = LogisticRegression(C=1 / (wd * len(x)), tol=1e-10, max_iter=10_000).fit(x.numpy(), y.numpy())
    ours = linear.logits(xt, w).argmax(1).numpy()
    theirs = clf.predict(xt.numpy())
    assert (ours == theirs).mean() >= 0.995
    assert abs((ours == yt.numpy()).mean() - (theirs == yt.numpy()).mean()) <= 0.003
    # the same optimum: both parametrisations are over-complete in the same way (K weight vectors)
    np.testing.assert_allclose(w[:-1].numpy(), clf.coef_.T, atol=2e-3 * np.abs(clf.coef_).max())


def test_linear_probe_differs_from_sklearn_at_another_strength():
    """The comparison above can fail: ten times the L2 strength is a different model."""
    from sklearn.linear_model import LogisticRegression

    x, y = _blobs(3000, 24, 6, seed=0, spread=0.4)
    w = linear.fit_logreg(x.double(), y, 6, 1e-1, 1000)
    clf = LogisticRegression(C=1 / (1e-2 * len(x)), tol=1e-10, max_iter=10_000).fit(x.numpy(), y.numpy())
    assert np.abs(w[:-1].numpy() - clf.coef_.T).max() > 2e-3 * np.abs(clf.coef_).max()


@pytest.mark.parametrize(("k", "classes"), [(5, 2), (20, 10)])
def test_knn_is_sklearn_cosine_knn(k, classes):
    """Every prediction is one of scikit-learn's most-voted classes, and is scikit-learn's wherever
    the vote has one winner (ties: scikit-learn takes the lowest label, the project the class of
    the closer neighbours). Two classes and odd k cannot tie: all predictions are the same."""
    from sklearn.neighbors import KNeighborsClassifier

    bank, bank_y = _blobs(4000, 32, classes, seed=2, spread=0.3)
    query, _ = _blobs(1000, 32, classes, seed=3, spread=0.3)
    labels, sims = knn.votes(query, bank, bank_y, k, classes)
    ours = knn.predict(labels, sims, k, classes).numpy()
    clf = KNeighborsClassifier(k, metric="cosine", algorithm="brute").fit(bank.numpy(), bank_y.numpy())
    theirs = clf.predict(query.numpy())
    idx = clf.kneighbors(query.numpy(), return_distance=False)
    votes = np.stack([np.bincount(bank_y.numpy()[i], minlength=classes) for i in idx])
    winners = votes == votes.max(1, keepdims=True)
    assert winners[np.arange(len(ours)), ours].all()
    unique = winners.sum(1) == 1
    assert unique.mean() > 0.5
    assert (ours[unique] == theirs[unique]).all()
    if classes == 2:
        assert (ours == theirs).all()


def test_knn_neighbours_are_sklearns():
    from sklearn.neighbors import NearestNeighbors

    bank, bank_y = _blobs(500, 16, 3, seed=4)
    query, _ = _blobs(50, 16, 3, seed=5)
    _, sims = knn.votes(query, bank, bank_y, 7, 3)
    dist, _ = NearestNeighbors(n_neighbors=7, metric="cosine").fit(bank.numpy()).kneighbors(query.numpy())
    np.testing.assert_allclose(sims.numpy(), 1 - dist, atol=1e-5)


def test_gpu_smoke_without_cuda_is_one_line_and_exit_2(capsys, tmp_path, monkeypatch):
    from bench.tools import gpu_smoke

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "speed.md"
    assert gpu_smoke.main(["--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "CUDA" in err and len(err.splitlines()) == 1
    assert not out.exists()  # nothing is written on a machine that measured nothing


def test_speed_sections_are_replaced_in_place(tmp_path):
    from bench.tools import speed

    path = tmp_path / "speed.md"
    path.write_text("# Speed\n\ntable\n\n## GPU\n\nNot run yet.\n\n## Other\n\nkept\n")
    speed.replace_section(path, "## GPU\n\nmeasured\n", "## GPU")
    text = path.read_text()
    assert text == "# Speed\n\ntable\n\n## GPU\n\nmeasured\n\n## Other\n\nkept\n"
    assert speed._section(text, "## GPU") == "## GPU\n\nmeasured\n\n"
    assert speed._section(text, "## Missing") is None
    speed.replace_section(path, "## New\n\nappended\n", "## New")
    assert path.read_text().endswith("## Other\n\nkept\n\n## New\n\nappended\n")
