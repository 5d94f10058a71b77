"""Every figure, as a reader sees it: each axis labelled, no legend over the plotted data.

Each figure function is fed small synthetic data of the shape its command writes (no run:
the whole file takes a few seconds) and checked with `advdyn.plot.style.layout_problems`,
which draws the figure (Agg) and compares the legends' boxes with the boxes of the lines,
bands, images and patches of every axes. The figures of `advdyn figure` compute their data
inside the figure function; they use the same style module and are drawn in `docs/images`.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import xarray as xr
from matplotlib.backends.backend_agg import FigureCanvasAgg

from advdyn.io import make_dataset
from advdyn.plot import critical, phase, posterior, risk, sme, style

RNG = np.random.default_rng(0)
T = np.linspace(0.0, 6.0, 31)


def _risk():
    ode = make_dataset(T, {"adv_risk": 1.5 * np.exp(-T) + 0.2,
                           "clean_risk": np.exp(-T) + 0.1}, "ode")
    reps = np.stack([1 + 0.05 * RNG.standard_normal(T.size) for _ in range(4)])
    sgd = make_dataset(T, {"adv_risk": (1.5 * np.exp(-T) + 0.2) * reps,
                           "clean_risk": (np.exp(-T) + 0.1) * reps}, "sgd", replicates=True)
    return risk.plot_quantities({"ode": ode, "sgd": sgd}, title="d = 10^7")


def _scan():
    lr, init = [0.1, 0.5, 2.0], ["zero", "random", "near_optimum"]
    mono = np.array([[True, True, True], [True, False, True], [False, False, False]])
    div = np.array([[False, False, False], [False, False, False], [True, True, False]])
    risk_ = 0.3 + np.exp(-np.outer(np.array(lr), T))[:, None, :] * np.ones((1, 3, 1))
    return xr.Dataset(
        {"monotone_risk": (("lr", "init"), mono), "monotone_dist": (("lr", "init"), mono),
         "diverged": (("lr", "init"), div), "adv_risk": (("lr", "init", "time"), risk_)},
        coords={"lr": lr, "init": init, "time": T}, attrs={"adv_risk_opt": 0.3})


def _monotone():
    return risk.plot_monotone_comparison({"eps = 0": _scan(), "eps = 0.5": _scan()})


def _phase():
    values = RNG.uniform(0.1, 2.0, (4, 5))
    values[3, 4] = values[2, 4] = np.nan  # non-convergent points
    ds = xr.Dataset({"adv_risk_limit": (("problem.epsilon", "lr.gamma"), values)},
                    coords={"problem.epsilon": [0.0, 0.25, 0.5, 0.75],
                            "lr.gamma": [0.1, 0.4, 0.8, 1.6, 2.4]})
    return phase.plot_phase_diagram(ds, "adv_risk_limit", "problem.epsilon", "lr.gamma")


def _critical():
    eps = np.linspace(0.0, 0.08, 9)
    loss = 0.2 + 12 * eps
    scratch = SimpleNamespace(
        table=xr.Dataset({"adv_train_loss": ("eps", loss),
                          "adv_test_loss": ("eps", loss + 0.3),
                          "adv_test_acc": ("eps", 0.95 - 5 * eps)}, coords={"eps": eps}),
        eps_star=0.03, clean_test_loss=0.56)
    fe = np.array([0.01, 0.02, 0.028, 0.032])
    fast = SimpleNamespace(
        table=xr.Dataset({"adv_train_loss": ("eps", 0.2 + 12 * fe),
                          "stage": ("eps", np.array([0, 0, 1, 1]))}, coords={"eps": fe}),
        eps_star=0.031, eps_star_linear=0.031, method="linear")
    ge = np.array([0.02, 0.05, 0.08])
    fgm = SimpleNamespace(
        table=xr.Dataset({"pgd_test_acc_final": ("eps", [0.8, 0.5, 0.05]),
                          "pgd_test_acc_best": ("eps", [0.82, 0.6, 0.3])}, coords={"eps": ge}),
        threshold=0.1, eps_unstable=0.07)
    strong = SimpleNamespace(losses=loss + 0.05, eps_star=0.028)
    strong_fast = SimpleNamespace(losses=0.25 + 12 * fe, eps_star=0.029)
    return critical.plot_critical(scratch, fast, fgm, strong, strong_fast, radius=8 / 255,
                                  interval=(0.025, 0.036, 0.95))


def _trajectories_and_pvalues():
    lr_ = np.linspace(-3, 1.5, 10)
    steps = np.arange(0, 101)
    traj = []
    for d, n in ((20, 1000), (200, 50)):
        rel = np.exp(lr_)[:, None] * (1 - np.exp(-steps / 20))[None, :]  # 0 at step 0
        rel[:, 1] = 1e-16  # round-off at the first step
        traj.append(xr.Dataset({"rel_diff": (("log_ratio", "step"), rel)},
                               coords={"log_ratio": lr_, "step": steps},
                               attrs={"d": d, "n": n}))
    lp = np.linspace(-3, 2, 11)
    pv = [xr.Dataset({"p_theta": ("log_ratio", 0.5 / (1 + np.exp(3 * (lp - s)))),
                      "p_loss": ("log_ratio", 0.5 / (1 + np.exp(3 * (lp - s))))},
                     coords={"log_ratio": lp}, attrs={"d": d, "n": 100, "adv_reps": 50})
          for d, s in ((2, 0.0), (5, 0.01), (10, 0.3))]  # the first two nearly on top
    return traj, pv


def _fig2():
    return critical.plot_linear_fig2(*_trajectories_and_pvalues())


def _fig3():
    return critical.plot_linear_fig3(_trajectories_and_pvalues()[1])


def _scaling():
    d, n = np.array([4, 8, 16, 32, 64]), np.array([1000, 500, 400, 320, 640])
    r = d / n
    return critical.plot_scaling(xr.Dataset(
        {"d": ("pair", d), "n": ("pair", n), "eps_cross": ("pair", 1.1 * np.sqrt(r)),
         "eps_surrogate": ("pair", 0.5 * r ** 0.79)}))


def _bound_terms(gap_sign=-1.0):
    ep = np.arange(1, 13)
    lr = np.where(ep < 7, 0.1, 0.01)[None, :] * np.ones((2, 1))
    ones = np.ones((2, ep.size))
    measured = np.where(ep % 3 == 0, 1.0, np.nan)[None, :] * ones
    return posterior.plot_bound_terms(xr.Dataset(
        {"train_loss": (("run", "epoch"), ones * np.exp(-ep / 5)),
         "test_loss": (("run", "epoch"), ones * np.exp(-ep / 5) + 0.2 * gap_sign),
         "gap": (("run", "epoch"), 0.2 * gap_sign * ones),
         "top_eigenvalues": (("run", "epoch", "k"), (measured * 5)[..., None] * [1, 0.5]),
         "hessian_trace": (("run", "epoch"), measured * 40),
         "curvature": (("run", "epoch"), measured * 0.01),
         "curvature_topk": (("run", "epoch"), measured * 0.008),
         "kl": (("run", "epoch"), measured * 30), "bound": (("run", "epoch"), measured * 0.6),
         "lr": (("run", "epoch"), lr)},
        coords={"run": ["at", "awp"], "epoch": ep, "k": [0, 1]},
        attrs={"data": "digits", "label_noise": 0.0, "loss_scale": 5.0}))


def _high():
    lam = np.linspace(0.2, 1.8, 40)
    t = np.linspace(0.0, 4.0, 21)
    var = np.outer(1 - np.exp(-t), 0.01 / lam)
    groups = np.array([0.4, 1.0, 1.6])
    gvar = np.outer(1 - np.exp(-t), 0.01 / groups)
    return xr.Dataset(
        {"eigenvalue": ("direction", lam), "ode_variance": (("time", "direction"), var),
         "sgd_variance": (("time", "direction"), var * (1 + 0.1 * RNG.standard_normal(
             var.shape))),
         "ode_group": (("time", "group"), gvar), "sgd_group": (("time", "group"), gvar * 1.02),
         "group_eigenvalue": ("group", groups), "stationary_before": ("direction", 0.01 / lam),
         "stationary_after": ("direction", 0.001 / lam)},
        coords={"time": t, "direction": np.arange(lam.size), "group": np.arange(3)},
        attrs={"t_drop": 2.0, "d": 400, "replicates": 8})


def _shrinkage():
    steps = np.array([0, 1, 3, 10, 30, 100])
    decay = np.exp(-steps / 20)[:, None] * np.ones((1, 4))
    small = xr.Dataset(
        {"theory_variance": (("step", "direction"), 0.1 * decay + 0.01),
         "propagation": (("step", "direction"), 0.1 * decay),
         "injected": (("step", "direction"), 0.01 * (1 - decay)),  # 0 at step 0
         "chain_variance": (("step", "direction"), 0.1 * decay + 0.011),
         "chain_se": (("step", "direction"), 0.002 * np.ones_like(decay))},
        coords={"step": steps, "direction": np.arange(4)}, attrs={"eta": 0.1, "eta_after": 0.01})
    return posterior.plot_shrinkage(small, _high())


def _sweep():
    rates, batch = np.geomspace(0.01, 0.3, 5), [8, 32, 128]
    base = np.outer(rates, 1 / np.array(batch))
    return posterior.plot_sweep(xr.Dataset(
        {"trace_hs": (("rate", "batch"), base), "leading": (("rate", "batch"), 0.9 * base),
         "neg_half_logdet": (("rate", "batch"), -np.log(base))},
        coords={"rate": rates, "batch": batch}))


def _spectrum():
    return posterior.plot_variance_spectrum(_high())


def _sme_risks(attrs=None):
    ones = np.ones((2, 3, T.size))
    curve = ones * (0.5 + np.exp(-T))
    return sme.plot_risks(xr.Dataset(
        {"adv_risk": (("training", "solver", "time"), curve * 1.2),
         "clean_risk": (("training", "solver", "time"), curve),
         "adv_risk_sd": (("training", "solver", "time"), 0.05 * ones),
         "clean_risk_sd": (("training", "solver", "time"), 0.05 * ones)},
        coords={"training": ["clean", "adversarial"], "solver": ["sgd", "sme1", "sme2"],
                "time": T}, attrs=attrs or {"eta": 0.05, "replicates": 64, "eps": 0.3}))


def test_sme_risks_of_an_older_file_names_its_replicates():
    # an sme_risks.nc of advdyn 0.1 has the attribute "paths", not "replicates"
    old = {"eta": 0.05, "paths": 64, "eps": 0.3}  # rename29: keep
    assert "64 replicates" in _sme_risks(old).get_suptitle()
    assert "64 replicates" in _sme_risks().get_suptitle()


def _weak_error():
    eta = np.array([0.02, 0.04, 0.08, 0.16])
    ds = xr.Dataset({f"order{o}_{a}": ("eta", eta ** o) for o in (1, 2)
                     for a in ("final", "max")}, coords={"eta": eta})
    summary = {f"slope_order{o}_{a}": (float(o), 0.05) for o in (1, 2) for a in ("final", "max")}
    return sme.plot_weak_error(ds, summary)


def _control():
    ds = xr.Dataset(
        {"loss": (("policy", "time"), np.exp(-np.outer([1, 2, 3], T))),
         "u": (("policy", "time"), np.stack([np.ones_like(T), 0.5 * np.ones_like(T),
                                             np.minimum(1, 1 / (1 + np.maximum(T - 1, 0)))])),
         "u_closed_form": ("time", np.minimum(1, 1 / (1 + np.maximum(T - 1, 0))))},
        coords={"policy": ["optimal", "u = 1", "u = 0.5"], "time": T})
    return sme.plot_control(ds, {"switch_time": 1.0})


def _flows():
    t = np.geomspace(1e-3, 10, 30)
    ones = np.ones((2, t.size))
    ds = xr.Dataset({name: (("training", "time"), ones * np.exp(-t) + 0.1)
                     for name in ("adv_risk", "clean_risk", "norm", "input_grad_norm")},
                    coords={"training": ["clean", "adversarial"], "time": t},
                    attrs={"eps": 0.5})
    return sme.plot_flows(ds, {"adv_risk_start": 1.1, "adv_risk_end_clean_flow": 1.3})


def _minimax():
    ds = xr.Dataset({"adv_risk": (("adversary", "time"), np.exp(-np.outer([1, 1.1, 1.2], T))),
                     "effective_radius": ("adversary", [0.5, 0.3, 0.5])},
                    coords={"adversary": ["exact", "K=1", "K=5"], "time": T},
                    attrs={"alpha": 0.1})
    return sme.plot_minimax(ds, {})


def _digits():
    ones = np.ones((2, 2, T.size))
    ds = xr.Dataset({n: (("training", "solver", "time"), ones * np.exp(-T) + 0.2)
                     for n in ("clean_risk", "adv_risk")},
                    coords={"training": ["clean", "adversarial"], "solver": ["sgd", "sme1"],
                            "time": T})
    return sme.plot_digits(ds, {})


def _phase_ode(fields=("problem.epsilon", "lr.gamma"), sgd=False, data=False):
    from advdyn.plot.phase_diagram import plot_phase

    eps, gamma = np.linspace(0.0, 1.0, 5), np.geomspace(0.1, 3.0, 6)
    dims = fields[: 2]
    shape = (eps.size, gamma.size)[: len(dims)]
    e = eps[:, None] if len(dims) == 2 else eps
    g = gamma[None, :] if len(dims) == 2 else 1.0
    risk = 0.1 + e * g * np.ones(shape)
    result = np.zeros(shape, int)
    result[-1, ...] = 1  # a diverged row
    coords = {"problem.epsilon": eps, "lr.gamma": gamma}
    ds = xr.Dataset(
        {"final_adv_risk": (dims, risk), "final_clean_risk": (dims, 0.5 * risk),
         "monotone_dist": (dims, (risk < 1).astype(float)),
         "time_within": (dims, 1.0 / risk), "result": (dims, result)},
        coords={**{f: coords[f] for f in dims}, "time": T},
        attrs={"fields": list(dims), "factor": 1.1})
    if sgd:  # the panel of run.methods = ["ode", "sgd"], with one more failed point
        sgd_result = result.copy()
        sgd_result[0, ...] = 1
        ds["sgd_gap"] = (dims, 0.05 * risk)
        ds["sgd_result"] = (dims, sgd_result)
        ds.attrs["methods"] = ["ode", "sgd"]
        if data:  # a data problem's three methods: the longest title
            ds["data_sgd_gap"], ds["data_sgd_result"] = ds["sgd_gap"], ds["sgd_result"]
            ds.attrs.update(methods=["ode", "data_sgd", "sgd"], surrogate="binned")
    return plot_phase(ds)


FIGURES = {
    "phase_ode": _phase_ode,
    "phase_ode_one_field": lambda: _phase_ode(("problem.epsilon",)),
    "phase_ode_sgd": lambda: _phase_ode(sgd=True),
    "phase_ode_sgd_one_field": lambda: _phase_ode(("problem.epsilon",), sgd=True),
    "phase_data_three_methods": lambda: _phase_ode(sgd=True, data=True),
    "risk": _risk, "monotone": _monotone, "phase": _phase, "critical_eps": _critical,
    "linear_fig2": _fig2, "linear_fig3": _fig3, "linear_scaling": _scaling,
    "posterior_bound_terms": _bound_terms, "posterior_shrinkage": _shrinkage,
    "posterior_sweep": _sweep, "posterior_variance_spectrum": _spectrum,
    "sme_risks": _sme_risks, "sme_weak_error": _weak_error, "sme_control": _control,
    "sme_flows": _flows, "sme_minimax": _minimax, "sme_digits": _digits,
}


@pytest.mark.parametrize("name", list(FIGURES))
def test_every_axis_labelled_no_legend_over_data_log_axes_say_so(name):
    fig = FIGURES[name]()
    assert style.layout_problems(fig) == []  # (draws the figure)
    for ax in fig.axes:
        if hasattr(ax, "_colorbar"):
            continue
        for axis, scale in ((ax.xaxis, ax.get_xscale()), (ax.yaxis, ax.get_yscale())):
            if scale == "log":
                assert "log" in axis.label.get_text(), (name, axis.label.get_text())
                labels = _shown(axis)
                assert labels and not any("$" in t for t in labels), (name, labels)


def _shown(axis) -> set[str]:
    lo, hi = sorted(axis.get_view_interval())
    ticks = [*axis.get_major_ticks(), *axis.get_minor_ticks()]
    return {t.label1.get_text() for t in ticks
            if t.label1.get_text() and lo * (1 - 1e-9) <= t.get_loc() <= hi * (1 + 1e-9)}


def test_the_check_finds_a_legend_over_the_data_and_a_missing_label():
    fig, axes = style.new_figure()
    ax = axes[0, 0]
    ax.plot(T, np.exp(-T), label="curve")
    ax.plot(T, 1 - np.exp(-T), label="other")
    ax.legend(loc="center")  # inside, over both curves
    ax.set_xlabel("t")
    problems = style.layout_problems(fig)
    assert any("overlaps" in p for p in problems)
    assert any("no y label" in p for p in problems)


def test_phase_diagram_explains_blank_cells():
    fig = _phase()
    assert "blank cells (2 of 20)" in fig._supxlabel.get_text()


def test_bound_terms_say_when_there_is_no_robust_overfitting():
    assert "no robust overfitting" in _bound_terms(-1.0)._supxlabel.get_text()
    assert _bound_terms(1.0)._supxlabel is None


def test_critical_figure_draws_the_judged_radius_and_interval():
    ax = _critical().axes[0]
    labels = ax.get_legend_handles_labels()[1]
    assert any(lab.startswith("judged radius --eps = 0.03137") for lab in labels)
    assert "eps* 95% prediction interval" in labels


def test_linear_fig2_leaves_round_off_out_of_the_log_axis():
    middle = _fig2().axes[1]  # its first two steps: 0 and round-off (1e-16)
    for line in middle.get_lines():
        y = np.asarray(line.get_ydata(), dtype=float)
        assert np.all(np.isnan(y[:2])) and np.nanmin(y) > 1e-12


@pytest.mark.parametrize(("n", "text"), [(10_000_000, "10^7"), (1000, "1000"),
                                         (2_000_000, "2 x 10^6"), (400, "400")])
def test_power_of_ten(n, text):
    assert style.power_of_ten(n) == text


def test_readable_log_labels_follow_the_span():
    for low, high, expect in ((0.3, 0.9, {"0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9"}),
                              (0.15, 2.5, {"0.2", "0.5", "1", "2"}),
                              (1e-4, 10.0, {"0.0001", "0.001", "0.01", "0.1", "1", "10"})):
        fig, axes = style.new_figure()
        ax = axes[0, 0]
        ax.plot([0, 1], [low, high])
        ax.set_yscale("log")
        ax.set_ylim(low, high)
        ax.set_ylabel("y")
        style.finish(fig)
        FigureCanvasAgg(fig).draw()
        shown = _shown(ax.yaxis)
        assert shown == expect, (low, high, shown)
        assert ax.get_ylabel() == "y (log scale)"


def test_phase_figure_has_a_panel_per_stochastic_method():
    titles = [ax.get_title() for ax in _phase_ode(sgd=True).axes if ax.get_visible()]
    assert any(t.startswith("SGD") and "gap to the ODE" in t for t in titles), titles
    assert not any(t.startswith("SGD") for t in (ax.get_title() for ax in _phase_ode().axes))
