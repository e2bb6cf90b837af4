"""Start-up and exit of pyfaceau's own processes (issue 8): cached numba kernels load
without numba's context refresh and give the same values, a kernel missing from the cache
still compiles, numba's BLAS probe is skipped safely, and the console command leaves
without the interpreter's teardown but with its exit code, its output and the exit
handlers."""

from __future__ import annotations

import ast
import gc
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


_KERNEL_RUN = (
    "import sys\n"
    "from pyfaceau.startup import start_numba_quickly\n"
    "start_numba_quickly()\n"
    "from pyfaceau.pdm.rotation import _euler_to_rotation_kernel\n"
    "import numpy as np\n"
    "r = _euler_to_rotation_kernel(np.float32(0.1), np.float32(-0.2), np.float32(0.3))\n"
    "print(np.asarray(r).tobytes().hex())\n"
    "from numba.core import entrypoints\n"
    "print('numba.np.arraymath' in sys.modules, 'scipy.linalg' in sys.modules,\n"
    "      'numba.np.arrayobj' in sys.modules, entrypoints._already_initialized)\n"
)


def _kernel_run(env: dict[str, str] | None = None) -> list[str]:
    out = subprocess.run([sys.executable, "-c", _KERNEL_RUN], capture_output=True, text=True,
                         timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_cached_kernels_load_without_the_refresh_and_missing_ones_compile(tmp_path) -> None:
    """With the kernel in numba's cache, start_numba_quickly loads it without numba's
    lowering (``numba.np.arraymath`` never imported, nor ``numba.np.arrayobj``, which
    the kernel's inlined array code names as its environment's module) and without
    numba's scan for extensions; with an empty cache the kernel compiles (the refresh
    happens with the extension scan, the BLAS probe is answered without SciPy). Both
    give the plain process's values."""
    import os

    import numpy as np

    from pyfaceau.pdm.rotation import _euler_to_rotation_kernel

    expected = np.asarray(
        _euler_to_rotation_kernel(np.float32(0.1), np.float32(-0.2), np.float32(0.3))
    ).tobytes().hex()
    cached = _kernel_run()  # this process's call above filled the cache
    assert cached == [expected, "False", "False", "False", "False"]
    compiled = _kernel_run({**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "empty")})
    assert compiled == [expected, "True", "False", "True", "True"]
    assert any((tmp_path / "empty").rglob("*.nbi"))  # it was compiled and saved
    # saved with numba's environment loader by name, not a copy of pyfaceau's
    saved = [p.read_bytes() for p in (tmp_path / "empty").rglob("*.nbc")]
    assert saved and not any(b"pyfaceau.startup" in data for data in saved)


_DEFERRED_BITCODE = (
    "from pyfaceau.startup import start_numba_quickly\n"
    "start_numba_quickly()\n"
    "import numba, numpy as np\n"
    "from pyfaceau.pdm.rotation import _euler_to_rotation_kernel as kernel\n"
    "args = (np.float32(0.1), np.float32(-0.2), np.float32(0.3))\n"
    "r = np.asarray(kernel(*args))\n"
    "(loaded,) = kernel.overloads.values()\n"
    "print(hasattr(loaded.library, '_pyfaceau_bitcode'))\n"
    "@numba.njit\n"  # compiled now: links the cached kernel's code
    "def twice(a, b, c):\n"
    "    return kernel(a, b, c) * np.float32(2)\n"
    "print(np.array_equal(np.asarray(twice(*args)), r * np.float32(2)),\n"
    "      hasattr(loaded.library, '_pyfaceau_bitcode'))\n"
)


def test_cached_kernels_parse_their_bitcode_only_when_linked() -> None:
    """A cached kernel loads without parsing its bitcode (pyfaceau/startup.py); a kernel
    compiled later that calls it links it (the bitcode parsed then) and computes the same
    values."""
    import numpy as np

    from pyfaceau.pdm.rotation import _euler_to_rotation_kernel

    _euler_to_rotation_kernel(np.float32(0.1), np.float32(-0.2), np.float32(0.3))  # cached
    out = subprocess.run([sys.executable, "-c", _DEFERRED_BITCODE], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True", "False"]


def _console(args: list[str]) -> subprocess.CompletedProcess:
    code = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('exit handler ran', flush=True))\n"
        "from pyfaceau.cli import run\n"
        f"sys.argv = ['pyfaceau', *{args!r}]\n"
        "run()\n"
        "print('not reached')\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)


def test_console_command_keeps_exit_code_output_and_exit_handlers(tmp_path) -> None:
    ok = _console(["--version"])
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines() == [f"pyfaceau, version {pyfaceau.__version__}",
                                      "exit handler ran"]
    bad = _console([str(tmp_path / "missing.avi"), "-o", str(tmp_path / "x.csv")])
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("pyfaceau: error:") and "missing.avi" in bad.stderr
    assert bad.stdout.splitlines() == ["exit handler ran"]


def test_console_command_turns_a_defect_into_one_line() -> None:
    """An unexpected exception in a command without its own guard (here ``models verify``,
    its check made to fail): one line, exit 1, the exit handlers still run."""
    code = (
        "import atexit, sys\n"
        "import pyfaceau.modelstore.store as store\n"
        "def broken(*a, **k):\n"
        "    raise RuntimeError('boom')\n"
        "store.check_store = broken\n"
        "atexit.register(lambda: print('exit handler ran'))\n"
        "from pyfaceau.cli import run\n"
        "sys.argv = ['pyfaceau', 'models', 'verify']\n"
        "run()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        "pyfaceau: error: internal error (RuntimeError: boom); please report it"
    ]
    assert out.stdout.splitlines()[-1] == "exit handler ran"


def test_console_pauses_the_collector_until_the_models_are_loaded(tmp_path) -> None:
    """The console command pauses the garbage collector for its start-up, then freezes the
    start-up objects and collects again (pyfaceau/startup.py); from Python (``main()``, as
    click's test runner calls it) the collector is left alone."""
    from click.testing import CliRunner

    from conftest import SAMPLES
    from pyfaceau.cli import main

    code = (
        "import atexit, gc, sys\n"
        "from pyfaceau.pipeline.pipeline import Pipeline\n"
        "seen = []\n"
        "load = Pipeline.load\n"
        "def spy(self, *args):\n"
        "    seen.append(gc.isenabled())\n"
        "    return load(self, *args)\n"
        "Pipeline.load = spy\n"
        "atexit.register(lambda: print(seen, gc.isenabled(), gc.get_freeze_count() > 0))\n"
        "from pyfaceau.cli import run\n"
        f"sys.argv = ['pyfaceau', {str(SAMPLES / 'image_sequence')!r}, '-o',"
        f" {str(tmp_path / 'x.csv')!r}, '--fast', '--no-progress']\n"
        "run()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "[False] True True"  # paused while loading
    frozen = gc.get_freeze_count()
    result = CliRunner().invoke(main, [str(SAMPLES / "image_sequence"), "-o",
                                       str(tmp_path / "y.csv"), "--fast", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert gc.isenabled() and gc.get_freeze_count() == frozen
    assert (tmp_path / "x.csv").read_bytes() == (tmp_path / "y.csv").read_bytes()
    gc.disable()  # a host that turned the collector off keeps it off
    try:
        result = CliRunner().invoke(main, [str(SAMPLES / "image_sequence"), "-o",
                                           str(tmp_path / "z.csv"), "--fast", "--no-progress"])
        assert result.exit_code == 0, result.output
        assert not gc.isenabled() and gc.get_freeze_count() == frozen
    finally:
        gc.enable()


_PROCESS_START = (
    "import sys, cv2\n"
    "import pyfaceau, pyfaceau.cli\n"
    "before = cv2.getNumThreads()\n"
    "from pyfaceau.startup import start_process\n"
    "start_process()\n"
    "import numba\n"
    "print(before > 1 or cv2.getNumThreads() == 1, cv2.getNumThreads(),\n"
    "      'scipy' in sys.modules, 'yaml' in sys.modules, int(numba.config.OPT),\n"
    "      'numba.experimental' in sys.modules, 'importlib.metadata' in sys.modules)\n"
    "import scipy, yaml\n"
    "print(scipy.__name__, yaml.__name__)\n"
    "from numba.experimental import jitclass\n"
    "from numba.core import entrypoints\n"
    "entrypoints.init_all()\n"  # numba's extension scan, reaching the real module
    "print(jitclass.__module__, numba.experimental.__file__.endswith('__init__.py'),\n"
    "      entrypoints.importlib_metadata.entry_points.__module__)\n"
)


_NEEDS_METADATA = (
    "import sys\n"
    "class UsesMetadataOnce:\n"  # a numba whose import reads importlib.metadata
    "    done = False\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name == 'numba.core.entrypoints' and not self.done:\n"
    "            self.done = True\n"
    "            import importlib.metadata\n"
    "            importlib.metadata.version('numpy')\n"
    "        return None\n"
    "sys.meta_path.insert(0, UsesMetadataOnce())\n"
    "from pyfaceau.startup import start_numba_quickly\n"
    "start_numba_quickly()\n"
    "import numba, importlib.metadata\n"
    "f = numba.njit(lambda x: x + 1)\n"
    "print(f(1), type(sys.modules['importlib.metadata']).__name__,\n"
    "      importlib.metadata.version('numpy') == __import__('numpy').__version__)\n"
)


def test_numba_that_needs_a_placeholder_while_imported_is_imported_as_it_is() -> None:
    """When numba's import needs a module that start-up stands in for (here
    importlib.metadata, read during the import), numba is imported again without the
    stand-ins, and works."""
    out = subprocess.run([sys.executable, "-c", _NEEDS_METADATA], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["2", "module", "True"]


def test_own_process_start_hides_numbas_optional_imports_and_opencvs_pool(tmp_path) -> None:
    """start_process (the CLI, batch workers): OpenCV runs on the calling thread (the
    library alone leaves OpenCV's pool as it is), numba is imported without SciPy,
    PyYAML, its experimental package and importlib.metadata, all still importable after
    (numba's own reference to importlib.metadata reaches the real module); with a
    ``.numba_config.yaml`` in the working directory numba reads it with PyYAML."""
    run = dict(capture_output=True, text=True, timeout=300, cwd=tmp_path)
    out = subprocess.run([sys.executable, "-c", _PROCESS_START], **run)
    assert out.returncode == 0, out.stderr
    first, second, third = out.stdout.splitlines()
    assert first.split()[:4] == ["True", "1", "False", "False"]
    assert first.split()[5:] == ["False", "False"]
    assert second == "scipy yaml"
    assert third == "numba.experimental.jitclass.decorators True importlib.metadata"
    (tmp_path / ".numba_config.yaml").write_text("opt: '1'\n")
    out = subprocess.run([sys.executable, "-c", _PROCESS_START], **run)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].split()[1:5] == ["1", "False", "True", "1"]
