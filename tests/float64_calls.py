"""Calls of every public entry point of the theory rooms, for tests/test_precision.py.

Run as a script in a fresh interpreter whose float64 is off:
``JAX_ENABLE_X64=0 python tests/float64_calls.py OUT.pkl [--jaxtyping]``. It imports the
rooms and lists their module-level JAX arrays narrower than float64 (made at import with
float64 off), makes every call, then turns float64 on and makes the same calls again as the
reference (the decorated calls compile the same float64 programs, which the second pass
reuses: one interpreter's compilations instead of two). With ``--jaxtyping`` every jaxtyping
annotation of the rooms is checked at run time (jaxtyping's import hook with beartype): a
call that breaks one reports the error. Writes, per call and pass, the dtypes and float64
values of the result's floating leaves (or the exception text). Inputs are Python floats,
NumPy float64 and (marked ``f32``) float32 JAX arrays, made afresh in each pass.
Sizes are tiny: this checks dtypes and values, not the mathematics.
"""

from __future__ import annotations

import os
import pickle
import sys
import traceback

import jax
import jax.numpy as jnp
import numpy as np


def f32(a):
    """A float32 JAX array (the same in both processes)."""
    return jnp.asarray(np.asarray(a, np.float32))


def f32_tree(tree):
    return jax.tree.map(
        lambda x: f32(x) if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jnp.floating)
        else x, tree)


def calls():
    """``name -> thunk``; each thunk returns the result to check."""
    import xarray as xr  # noqa: F401  (results of the studies)

    import advdyn
    from advdyn import posterior as po
    from advdyn import sme
    from advdyn import theory as th
    from advdyn.critical import exact, linear
    from advdyn.posterior import highdim
    from advdyn.theory import rates, spectral, stationary

    cfg = advdyn.ProblemConfig(d=40, task={"kind": "regression", "noise": 0.3}, epsilon=0.5,
                               spectrum={"kind": "uniform", "low": 0.2, "high": 1.8})
    inst = advdyn.instantiate(cfg)
    inst32 = f32_tree(inst)
    times = np.linspace(0.0, 4.0, 5)
    opt = th.adversarial_optimum(inst)
    lim = th.constant_rate_limit(inst, 0.3)
    H = np.array([[1.3, 0.2, 0.0], [0.2, 0.9, 0.1], [0.0, 0.1, 0.6]])
    C = np.array([[0.5, 0.1, 0.05], [0.1, 0.4, 0.0], [0.05, 0.0, 0.3]])
    K = np.diag([0.5, 0.8, 1.2])
    ts3 = np.array([1.0, -0.7, 0.5])
    th3 = np.array([0.8, -0.5, 0.4])
    key = jax.random.key(0)
    gls = sme.GaussianLeastSquares(np.ones(3), np.array([0.6, 0.0, 0.8]), 0.1, 0.2)
    gls32 = sme.GaussianLeastSquares(f32(np.ones(3)), f32([0.6, 0.0, 0.8]), f32(0.1), f32(0.2))
    emp = sme.EmpiricalObjective(np.asarray(np.random.default_rng(0).standard_normal((8, 3))),
                                 np.linspace(-1, 1, 8), linear_eps=0.1, n_params=3)
    qg = sme.QuadraticGame(np.eye(2), 0.3 * np.eye(2), np.eye(2), np.array([1.0, -0.5]),
                           0.2 * np.eye(2), 0.1 * np.eye(2))
    pg = sme.PerturbationGame(np.array([0.5, 1.0]), np.array([1.0, -0.5]), 0.3, rho=1.0)
    x_lin = np.random.default_rng(1).standard_normal((6, 3))
    y_lin = x_lin @ ts3
    path = highdim.posterior_path(inst, th.Constant(0.3), times)
    D = np.asarray(lim.terms.D)
    N = np.asarray(lim.terms.N)

    return {
        # problem / theory (core)
        "ProblemInstance.initial_state": lambda: inst.initial_state(),
        "ProblemInstance.initial_state f32": lambda: inst32.initial_state(),
        "solve_ode": lambda: th.solve_ode(inst, th.Constant(0.3), times),
        "solve_ode f32 instance": lambda: th.solve_ode(inst32, th.Constant(f32(0.3)),
                                                       f32(times)),
        "Constant f32": lambda: th.Constant(f32(0.3)),
        "Decay": lambda: th.Decay(f32(0.5), 2.0),
        "StepDrop": lambda: th.StepDrop(0.5, f32(0.1), 2.0),
        "Polyak": lambda: th.Polyak(f32(0.1)),
        "LineSearch": lambda: th.LineSearch(f32(5.0)),
        "adversarial_optimum": lambda: th.adversarial_optimum(inst),
        "adversarial_optimum f32": lambda: th.adversarial_optimum(inst32),
        "StationaryPoint.effective_ridge": lambda: opt.effective_ridge,
        "StationaryPoint.adv_risk": lambda: opt.adv_risk,
        "StationaryPoint.relaxation_time": lambda: lim.relaxation_time(0.3),
        "StationaryPoint.distance2": lambda: opt.distance2(inst.initial_state(), inst),
        "constant_rate_limit": lambda: th.constant_rate_limit(inst, 0.3),
        "constant_rate_limit f32": lambda: th.constant_rate_limit(inst32, f32(0.3)),
        "optimum_vector": lambda: stationary.optimum_vector(inst, opt),
        "solve_ridge_ode": lambda: th.solve_ridge_ode(
            inst, times, np.full(5, 0.3), np.full(5, 0.2), np.full(5, 1.0)),
        "bin_instance": lambda: th.bin_instance(inst, 4),
        "bin_instance f32": lambda: th.bin_instance(inst32, 4),
        "relaxed_eigenvalue": lambda: spectral.relaxed_eigenvalue(th.Constant(0.3), times,
                                                                  inst.loss),
        "mean_eigenvalue": lambda: rates.mean_eigenvalue(inst),
        "simulate_sgd": lambda: advdyn.simulate_sgd(inst, th.Constant(0.3), key, t_max=2.0,
                                                    n_times=3, replicates=2),
        "simulate_sgd f32 instance": lambda: advdyn.simulate_sgd(
            inst32, th.Constant(f32(0.3)), key, t_max=2.0, n_times=3, replicates=2),
        "simulate_hsgd": lambda: advdyn.simulate_hsgd(inst, th.Constant(0.3), key, t_max=2.0,
                                                      n_times=3, replicates=2),
        # posterior
        "stationary_covariance": lambda: po.stationary_covariance(H, C, 0.2, 0.5, 4),
        "stationary_covariance f32": lambda: po.stationary_covariance(f32(H), f32(C), 0.2),
        "stationary_covariance kron": lambda: po.stationary_covariance(H, C, 0.2,
                                                                       method="kron"),
        "transient_covariance": lambda: po.transient_covariance(H, C, 0.1, C, [0, 3]),
        "least_squares_fixed_point": lambda: po.least_squares_fixed_point(K, 0.3, 0.05),
        "least_squares_transient": lambda: po.least_squares_transient(K, 0.3, 0.05, K, [0, 3]),
        "transition_matrix": lambda: po.transition_matrix(f32(H), 0.2, 0.9),
        "noise_matrix": lambda: po.noise_matrix(f32(C), 0.2, 4),
        "solve_discrete_lyapunov": lambda: po.solve_discrete_lyapunov(
            po.transition_matrix(H, 1e-4, 0.9), po.noise_matrix(C, 1e-4)),
        "eigenbasis_variance": lambda: po.eigenbasis_variance(f32([1.0, 2.0]),
                                                              f32([0.3, 0.4]), 0.1, 0.9, 4),
        "eigenbasis_covariance": lambda: po.eigenbasis_covariance(np.array([1.0, 2.0]), C[:2, :2],
                                                                  0.1, 0.9, 4),
        "curvature_trace": lambda: po.curvature_trace(f32(H), f32(C)),
        "leading_curvature_trace": lambda: po.leading_curvature_trace(0.7, 0.1, 0.9, 4),
        "adversarial_ls_risk": lambda: po.adversarial_ls_risk(th3, K, ts3, 0.3, 0.2),
        "adversarial_ls_hessian": lambda: po.adversarial_ls_hessian(th3, K, ts3, 0.3, 0.2),
        "adversarial_ls_gradient_moment": lambda: po.adversarial_ls_gradient_moment(
            th3, K, ts3, 0.3, 0.2),
        "adversarial_ls_optimum": lambda: po.adversarial_ls_optimum(K, ts3, 0.3, 0.2),
        "adversarial_ls_sample_gradient": lambda: po.adversarial_ls_sample_gradient(
            f32(th3), f32(x_lin), f32(y_lin), 0.2),
        "gaussian_kl": lambda: po.gaussian_kl(th3, C, ts3, H),
        "gaussian_kl_diag": lambda: po.gaussian_kl_diag(th3, np.diag(C), ts3, 0.7),
        "expected_quadratic_loss": lambda: po.expected_quadratic_loss(0.2, H, th3, ts3, C),
        "mcallester_bound": lambda: po.mcallester_bound(0.2137, 12.34, 517, 0.013),
        "catoni_bound": lambda: po.catoni_bound(0.2137, 12.34, 517, 0.013, 100.0),
        "grid_bound": lambda: po.grid_bound(0.2137, np.array([12.34, 10.0]), 517, 0.013),
        "bound_terms": lambda: po.bound_terms(0.2137, 0.01, np.array([12.34, 10.0]), 517,
                                              0.013),
        "prior_variance_grid": lambda: po.prior_variance_grid(1e-4, 1.0, 5),
        "posterior_path": lambda: path,
        "posterior_kl": lambda: highdim.posterior_kl(path, inst, np.array([0.1, 1.0])),
        "stationary_variance": lambda: highdim.stationary_variance(D, N, 1e-4, 40),
        "frozen_transient": lambda: highdim.frozen_transient(
            highdim.stationary_variance(D, N, 0.3, 40), D, N, 0.03, np.array([0.0, 1.0]), 40),
        # sme
        "GaussianLeastSquares.risk": lambda: gls.risk(np.zeros(3), 0.0),
        "GaussianLeastSquares.risk f32": lambda: gls32.risk(f32(np.zeros(3)), 0.0),
        "GaussianLeastSquares.loss": lambda: gls.loss(th3),
        "GaussianLeastSquares.gradient": lambda: gls.gradient(th3),
        "GaussianLeastSquares.gradient_covariance": lambda: gls.gradient_covariance(th3),
        "GaussianLeastSquares.noise_factor": lambda: gls.noise_factor(th3),
        "GaussianLeastSquares.observables": lambda: gls.observables(th3),
        "GaussianLeastSquares.from_instance": lambda: sme.GaussianLeastSquares.from_instance(
            advdyn.instantiate(advdyn.ProblemConfig(
                d=3, task={"kind": "regression", "noise": 0.3}, epsilon=0.2,
                spectrum={"kind": "uniform", "low": 0.2, "high": 1.8}))).loss(th3),
        "EmpiricalObjective.loss": lambda: emp.loss(f32(th3)),
        "EmpiricalObjective.observables": lambda: emp.observables(th3),
        "solve_sme": lambda: sme.solve_sme(sme.SME(gls, 0.05, order=2), th3, key, t_max=0.2,
                                           dt=0.05, n_times=3, replicates=2),
        "simulate_objective_sgd (sme)": lambda: sme.simulate_objective_sgd(
            gls32, 0.05, f32(th3), key, t_max=0.2, n_times=3, replicates=2),
        "core_scaling": lambda: sme.core_scaling(gls, 0.5, 3).drift(th3),
        "gradient_flow": lambda: sme.gradient_flow(gls, f32(th3), np.array([0.0, 0.5])),
        "line_search_rate": lambda: sme.line_search_rate(gls, th3, 10.0, 3),
        "solve_control": lambda: sme.solve_control(1.0, 0.5, 0.1, 1.0, np.array([0.0, 1.0])),
        "switch_time": lambda: sme.switch_time(1.0, 0.5, 0.1, 1.0),
        "optimal_policy": lambda: sme.optimal_policy(f32([0.0, 0.5]), 1.0, 0.5, 0.1, 1.0),
        "exact_second_moments": lambda: sme.exact_second_moments(
            np.array([0.5, 1.0]), 0.3, np.array([1.0, -0.5]), 0.1, 0.5),
        "weak_error_study": lambda: sme.weak_error_study(
            np.array([0.5, 1.0]), 0.3, np.array([1.0, -0.5]), [0.1, 0.05], 0.5),
        "loglog_fit (sme)": lambda: sme.loglog_fit(np.array([1.0, 2.0, 4.0]),
                                                       np.array([1.0, 4.1, 15.9])),
        "quadratic_game_moments": lambda: sme.quadratic_game_moments(
            qg, np.array([0.5, 0.5]), np.zeros(2), 0.1, 0.5),
        "simulate_game": lambda: sme.simulate_game(pg, 0.05, f32([0.2, 0.1]), f32([0.0, 0.0]),
                                                   key, t_max=0.2, n_times=3, replicates=2),
        "game_step": lambda: sme.game_step(qg, 0.1, f32([0.5, 0.5]), f32([0.0, 0.0]), key),
        "linear_predict": lambda: sme.linear_predict(f32(th3), f32(x_lin)),
        "squared_loss": lambda: sme.squared_loss(f32(y_lin), f32(y_lin + 0.1)),
        # critical: the linear theory and the exact eps*
        "teacher": lambda: linear.teacher(5, 1),
        "draw_data": lambda: linear.draw_data(key, linear.teacher(5, 1), 7, 0.5),
        "adversarial_risk": lambda: linear.adversarial_risk(f32(th3), f32(x_lin), f32(y_lin),
                                                            0.1),
        "adversarial_gradient": lambda: linear.adversarial_gradient(th3, x_lin, y_lin, 0.1,
                                                                    "linf"),
        "gradient_descent": lambda: linear.gradient_descent(f32(x_lin), f32(y_lin), 0.1, "l2",
                                                            0.1, 5),
        "default_lr": lambda: linear.default_lr(5, 20),
        "common_lr": lambda: linear.common_lr(5, 20, 0.5),
        "trajectory_study": lambda: linear.trajectory_study(4, 8, [0.0, 0.5], reps=2, steps=3),
        "pvalue_study": lambda: linear.pvalue_study(4, 8, [0.0, 0.5], clean_reps=6, adv_reps=3,
                                                    steps=3),
        "critical_study": lambda: linear.critical_study([(4, 8)], np.array([0.0, 0.5]), reps=2,
                                                        steps=5),
        "default_rate": lambda: exact.default_rate(),
        "least_squares_instance": lambda: exact.least_squares_instance(6, 0.2),
        "ode_critical_radius": lambda: exact.ode_critical_radius(6, np.array([0.0, 1.0]),
                                                                 np.array([0.0, 0.2])),
        "instance_critical_radius": lambda: exact.instance_critical_radius(
            inst, np.array([0.0, 1.0]), np.array([0.2])),
        "sgd_critical_radius": lambda: exact.sgd_critical_radius(6, 1.0, 2,
                                                                 np.array([0.0, 0.2]),
                                                                 replicates=2),
        "critical_curve": lambda: exact.critical_curve(
            np.array([0.0, 0.1, 0.2]), f32([[1.0, 1.0], [1.1, 1.05], [1.3, 1.2]]),
            f32([1.0, 1.0])),
    }


def leaves(result):
    """The result's array-like leaves (xarray datasets by variable, pytrees by leaf)."""
    import xarray as xr

    if isinstance(result, xr.Dataset):
        return [result[v].values for v in sorted(result.data_vars)]
    out = []
    for x in jax.tree.leaves(result):
        if isinstance(x, (jax.Array, np.ndarray, np.generic, float)):
            out.append(x)
    return out


def _dtype(v) -> np.dtype:
    return np.dtype(v.dtype) if hasattr(v, "dtype") else np.result_type(v)


def run() -> dict:
    """``name -> {"dtypes", "values", "seconds"}`` or ``{"error"}`` for every call."""
    import time

    report = {}
    only = set(filter(None, os.environ.get("ADVDYN_FLOAT64_ONLY", "").split(",")))
    for name, thunk in calls().items():
        if only and name not in only:
            continue
        t0 = time.perf_counter()
        try:
            values = leaves(thunk())
        except Exception:
            report[name] = {"error": traceback.format_exc(limit=3)}
            continue
        report[name] = {
            "dtypes": [str(_dtype(v)) if not isinstance(v, float) else "float" for v in values],
            "values": [np.asarray(v).astype(np.complex128 if np.iscomplexobj(v) else np.float64)
                       if _dtype(v).kind in "biufc" else None for v in values],
            "seconds": time.perf_counter() - t0,
        }
    return report


#: the rooms whose modules must hold no float32 constant made at import
ROOMS = ("advdyn.problem", "advdyn.theory", "advdyn.simulate", "advdyn.posterior", "advdyn.sme",
         "advdyn.critical")


def narrow_module_arrays() -> list[str]:
    """``module.name`` of every module-level JAX array of the rooms narrower than float64."""
    import importlib
    import pkgutil

    found = []
    for room in ROOMS:
        package = importlib.import_module(room)
        names = [room] + [m.name for m in pkgutil.walk_packages(package.__path__, room + ".")]
        for module_name in names:
            module = importlib.import_module(module_name)
            for name, value in vars(module).items():
                leaves = jax.tree.leaves(value) if isinstance(value, tuple | list | dict) else [
                    value]
                if any(isinstance(v, jax.Array) and v.dtype in (jnp.float32, jnp.float16,
                                                                jnp.bfloat16, jnp.complex64)
                       for v in leaves):
                    found.append(f"{module_name}.{name}")
    return found


#: the packages whose jaxtyping annotations the child run checks (beartype)
CHECKED = ("advdyn.problem", "advdyn.theory", "advdyn.simulate", "advdyn.adversarial",
           "advdyn.critical", "advdyn.posterior", "advdyn.sme", "advdyn.solution",
           "advdyn.precision")


if __name__ == "__main__":
    if "--jaxtyping" in sys.argv:  # before any advdyn module is imported
        import jaxtyping

        jaxtyping.install_import_hook(list(CHECKED), "beartype.beartype")
    x64 = bool(jax.config.jax_enable_x64)
    narrow = narrow_module_arrays()
    off = run()
    jax.config.update("jax_enable_x64", True)
    reference = run()
    with open(sys.argv[1], "wb") as f:
        pickle.dump({"x64": x64, "narrow_module_arrays": narrow, "report": off,
                     "reference": reference}, f)
