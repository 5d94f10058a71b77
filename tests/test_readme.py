"""The README's Python example runs as written (docs must not rot)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    gap = namespace["ad"].compare(namespace["ode"], namespace["sgd"])["adv_risk"]
    # d = 2000, 4 replicates: the documented agreement (see tests/test_agreement.py)
    assert gap["max_relative_gap"] < 0.03
