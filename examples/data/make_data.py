"""Write the example data sets of examples/data/ from what scikit-learn ships (no network).

    python examples/data/make_data.py

* ``digits01.npz``: the 8x8 digits 0 and 1 (360 rows), raw pixels, constant pixels dropped;
  labels 0/1 (advdyn reads them as -1/+1).
* ``digits_rf.npz``: all 1797 digits, even (+1) vs odd (-1), lifted by a fixed ReLU
  random-feature map ``relu(W x + b)`` (``W`` Gaussian with variance 1/64, ``b`` standard
  Gaussian, seed 0) to 2000 features (features that are zero on every row are skipped).
* ``diabetes.csv``: scikit-learn's diabetes regression set (442 rows, 10 features, column
  ``target``).
"""

from pathlib import Path

import numpy as np
from sklearn.datasets import load_diabetes, load_digits

HERE = Path(__file__).resolve().parent
RF_FEATURES = 2000


def main() -> None:
    digits = load_digits()
    X, y = digits.data / 16.0, digits.target
    keep = y <= 1
    X01 = X[keep]
    X01 = X01[:, X01.max(axis=0) > X01.min(axis=0)]
    np.savez(HERE / "digits01.npz", X=X01, y=y[keep])

    rng = np.random.default_rng(0)
    W = rng.standard_normal((X.shape[1], 2 * RF_FEATURES)) / np.sqrt(X.shape[1])
    b = rng.standard_normal(2 * RF_FEATURES)
    F = np.maximum(X @ W + b, 0.0)
    F = F[:, F.max(axis=0) > F.min(axis=0)][:, :RF_FEATURES]
    np.savez(HERE / "digits_rf.npz", X=F.astype(np.float32), y=(y % 2 == 0).astype(np.int8))

    diabetes = load_diabetes()
    names = [*diabetes.feature_names, "target"]
    np.savetxt(HERE / "diabetes.csv", np.column_stack([diabetes.data, diabetes.target]),
               delimiter=",", header=",".join(names), comments="", fmt="%.10g")
    print(f"wrote digits01.npz {X01.shape}, digits_rf.npz {F.shape}, diabetes.csv "
          f"{diabetes.data.shape} to {HERE}")


if __name__ == "__main__":
    main()
