"""Start-up of pyfaceau's own processes (issue 8): numba's BLAS probe is skipped safely."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pyfaceau

PACKAGE = Path(pyfaceau.__file__).parent


def test_no_jitted_kernel_uses_numbas_blas() -> None:
    """The CLI answers numba's BLAS probe "no" (pyfaceau.startup): that is only safe while
    no jitted function uses ``np.dot``, ``@``, ``np.linalg`` and the like."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef):
                continue
            if not any("jit" in ast.unparse(d) for d in fn.decorator_list):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult):
                    offenders.append(f"{path.name}:{fn.name} uses @")
                if isinstance(node, ast.Attribute) and node.attr in (
                    "dot", "vdot", "inner", "outer", "matmul", "linalg", "kron", "trace",
                ):
                    offenders.append(f"{path.name}:{fn.name} uses .{node.attr}")
    assert not offenders, offenders


def test_skip_numba_blas_probe_leaves_scipy_importable() -> None:
    code = (
        "import sys\n"
        "from pyfaceau.startup import skip_numba_blas_probe\n"
        "skip_numba_blas_probe()\n"
        "import numba.np.arraymath as am\n"
        "assert am._HAVE_BLAS is False\n"
        "assert 'scipy.linalg' not in sys.modules\n"
        "import scipy.linalg.cython_blas\n"  # still importable afterwards
        "skip_numba_blas_probe()\n"  # a second call changes nothing
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
