"""The closing line of ``advdyn phase``: its times add up the ODE's and every stochastic
method's compile and solve seconds (``PhaseResult.timings``)."""

from __future__ import annotations


def test_time_summary_adds_every_methods_compile_and_solve():
    from advdyn.cli.phase import time_summary

    # the timings of a 79 s run with methods = ode, data_sgd, sgd (/tmp/rev/ph)
    timings = {"compile_s": 42.3, "solve_s": 0.7, "optimum_s": 20.2, "points": 12.0,
               "solve_cpu_s": 0.4, "data_sgd_compile_s": 20.3, "data_sgd_solve_s": 0.26,
               "sgd_compile_s": 10.0, "sgd_solve_s": 0.16}
    assert time_summary(timings) == ("compile 72.6 s, solve 1.1 s (ode 42.3 + 0.7 s, "
                                     "data_sgd 20.3 + 0.3 s, sgd 10.0 + 0.2 s)")
    assert time_summary({"compile_s": 1.0, "solve_s": 2.0, "points": 4.0}) == (
        "compile 1.0 s, solve 2.0 s (ode 1.0 + 2.0 s)")
