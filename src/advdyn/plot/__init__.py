"""Figures (matplotlib, without pyplot): risk curves, phase diagrams, eps* plots."""


def power_of_ten(n: float) -> str:
    """A size as a reader writes it: ``10000000 -> "10^7"``, ``2000 -> "2000"``.

    Here (no matplotlib import) so that a title can be built where matplotlib is not loaded.
    """
    import math

    if n >= 1e5:
        exponent = math.floor(math.log10(n) + 1e-12)
        mantissa = n / 10**exponent
        return f"10^{exponent}" if abs(mantissa - 1) < 1e-9 else f"{mantissa:g} x 10^{exponent}"
    return f"{n:g}"
