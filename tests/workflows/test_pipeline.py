"""End-to-end library paths: mixtures with more components, classification metrics,
single-method runs and config overrides."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import advdyn as ad
from advdyn.config.schema import ProblemConfig
from advdyn.io import to_dataset
from advdyn.io.compare import relative_gap
from advdyn.problem.state import DirectionState
from advdyn.theory.statistics import observables, statistics

THREE_COMPONENTS = [
    {"weight": 0.5, "mean_norm": 1.5, "mean_direction": "teacher", "label": 1},
    {"weight": 0.3, "mean_norm": 1.0, "mean_direction": "random", "label": -1},
    {"weight": 0.2, "mean_norm": 1.2, "mean_direction": "common", "label": -1,
     "spectrum": {"kind": "uniform", "low": 0.5, "high": 1.0}},
]


def test_classification_errors_match_monte_carlo():
    """clean_error = P(y <theta,x> < 0); robust_error = P(y <theta,x> < eps |theta|), the
    l2 worst case for a linear classifier. Sampled with a fixed seed, within 4 SE."""
    cfg = ProblemConfig(d=50, task={"kind": "classification"}, loss="logistic", epsilon=0.3,
                        components=THREE_COMPONENTS)
    inst = ad.instantiate(cfg)
    theta = inst.theta0 + 0.8 * inst.theta_star
    got = observables(statistics(DirectionState.from_iterate(theta, inst), inst), inst)
    n = 400_000
    kc, kz = jax.random.split(jax.random.key(11))
    cls = jax.random.choice(kc, 3, (n,), p=inst.weights)
    x = inst.means[cls] + jnp.sqrt(inst.eigenvalues[cls]) * jax.random.normal(kz, (n, inst.d))
    margin = np.asarray(inst.labels[cls] * (x @ theta))
    for name, threshold in (("clean_error", 0.0),
                            ("robust_error", 0.3 * float(jnp.linalg.norm(theta)))):
        hits = margin < threshold
        se = hits.std() / np.sqrt(n)
        assert abs(float(got[name]) - hits.mean()) <= 4 * se, name


def test_three_component_classification_sgd_matches_ode():
    """C = 3 with explicit components, labels and a per-component spectrum. Same fluctuation
    argument as tests/test_agreement.py: 3% on the mean of 8 replicates at d = 2000."""
    cfg = ProblemConfig(d=2000, task={"kind": "classification"}, loss="logistic", epsilon=0.3,
                        components=THREE_COMPONENTS)
    inst = ad.instantiate(cfg)
    lr = ad.Constant(1.5)
    sgd = to_dataset(
        ad.simulate_sgd(inst, lr, ad.stream_key(0), t_max=4.0, n_times=17, replicates=8)
    )
    ode = to_dataset(ad.solve_ode(inst, lr, sgd.time.values))
    for name in ("adv_risk", "clean_error"):
        gap = relative_gap(ode[name], sgd[name].mean("replicate")).values
        assert gap.max() < 0.03, (name, gap.max())


def test_single_method_runs_write_what_they_ran(tmp_path):
    base = ad.default_config().with_overrides(**{"problem.d": 200, "run.t_max": 1.0,
                                                 "run.replicates": 2})
    sgd_only = ad.run(base.with_overrides(**{"run.methods": ["sgd"]}), tmp_path / "s")
    written = (tmp_path / "s").iterdir()  # the hidden .advdyn.lock aside (advdyn.io.folder_lock)
    assert sorted(p.name for p in written if p.name != ".advdyn.lock") == [
        "risk.png", "sgd.nc", "summary.json"]
    assert "gap_vs_ode" not in sgd_only.summary
    ode_only = ad.run(base.with_overrides(**{"run.methods": ["ode"]}), tmp_path / "o")
    assert "sgd" not in ode_only.datasets and (tmp_path / "o" / "ode.nc").is_file()
    reread = ad.read_netcdf(tmp_path / "o" / "ode.nc")
    np.testing.assert_allclose(reread.adv_risk, ode_only.datasets["ode"].adv_risk)
    assert ad.validate_config(__import__("json").loads(reread.attrs["config"])) == \
        base.with_overrides(**{"run.methods": ["ode"]})


def test_overrides_keep_or_replace_a_custom_loss():
    fn = lambda r, y: 0.5 * (r - y) ** 2  # noqa: E731
    cfg = ad.Config(problem=ProblemConfig(d=10, loss=fn))
    assert cfg.with_overrides(**{"problem.d": 20}).problem.loss is fn
    assert cfg.with_overrides(**{"problem.loss": "least_squares"}).problem.loss == "least_squares"


def test_failed_write_keeps_previous_file_and_leaves_no_temporary(tmp_path):
    from advdyn.io.files import atomic_path, write_json

    target = write_json({"v": 1}, tmp_path / "summary.json")
    try:
        with atomic_path(target) as tmp:
            tmp.write_text("half written")
            raise KeyboardInterrupt  # an interruption in the middle of a write
    except KeyboardInterrupt:
        pass
    assert __import__("json").loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]
