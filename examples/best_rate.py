"""The best constant learning rate gamma*(eps) for a horizon, by gradient descent on the ODE.

For each attack radius eps, minimise the adversarial risk reached at t_max over the
constant rate gamma with optimistix's BFGS on log(gamma), the derivative taken through the
exact dynamics (advdyn.theory.ode under jax.grad), every eps at once under jax.vmap; then compare
with a grid search over gamma (advdyn.phase_diagram, one batched solve).

    python examples/best_rate.py
"""

from __future__ import annotations

if __name__ == "__main__":
    import time

    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optimistix as optx

    import advdyn as ad
    from advdyn.precision import x64

    config = ad.default_config().with_overrides(**{
        "problem.d": 10_000, "run.methods": ["ode"], "run.bins": 16, "run.bins_check": False,
        "run.t_max": 5.0, "run.n_times": 11,
    })
    eps = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    with x64():
        base = ad.binned_from_config(config.problem, 16)
        times = ad.time_grid(config.problem.d, config.run.t_max, config.run.n_times).times
        integrator = ad.make_integrator("tsit5", rtol=1e-10, atol=1e-30)

        def final_adv_risk(log_gamma, e):
            inst = eqx.tree_at(lambda i: i.epsilon, base, e)
            rate = eqx.tree_at(lambda r: r.gamma, ad.Constant(1.0), jnp.exp(log_gamma))
            return ad.integrate_ode(inst, rate, times, integrator, throw=False).ys["adv_risk"][-1]

        def best(e):
            sol = optx.minimise(final_adv_risk, optx.BFGS(rtol=1e-8, atol=1e-10),
                                jnp.log(0.5), args=e, max_steps=100, throw=False)
            ok = sol.result == optx.RESULTS.successful
            return jnp.exp(sol.value), final_adv_risk(sol.value, e), ok

        start = time.perf_counter()
        gamma_star, risk_star, solved = jax.jit(jax.vmap(best))(jnp.asarray(eps))
        print(f"BFGS on the ODE: {time.perf_counter() - start:.1f} s (with compilation)")

        grid = np.geomspace(0.05, 2.0, 400)
        start = time.perf_counter()
        ds = ad.phase_diagram(config, {"problem.epsilon": eps, "lr.gamma": grid}).dataset
        print(f"grid search, {grid.size} rates x {eps.size} radii: "
              f"{time.perf_counter() - start:.1f} s (with compilation)")
    final = ds["final_adv_risk"].values
    print(f"BFGS converged for {int(np.sum(solved))} of {eps.size} radii")
    print(f"{'eps':>5} {'gamma* (BFGS)':>14} {'R_eps(t_max)':>13} {'gamma* (grid)':>14} "
          f"{'R_eps (grid)':>13}")
    for k, e in enumerate(eps):
        j = int(np.nanargmin(final[k]))
        print(f"{e:>5.2f} {float(gamma_star[k]):>14.4f} {float(risk_star[k]):>13.6f} "
              f"{grid[j]:>14.4f} {final[k, j]:>13.6f}")
