"""Run MLX on an optimised BLAS on Linux.

MLX's Linux wheel links netlib's *reference* BLAS/LAPACK (~5 GFLOP/s fp32 matmul on a 2-core
box). MLX resolves `cblas_*` and LAPACK symbols through the dynamic linker's global scope, so an
OpenBLAS loaded with RTLD_GLOBAL *before* `mlx.core` is imported takes precedence (~35x faster
here). This module must therefore be imported before anything imports mlx; `sleepllm/__init__`
does so. On macOS MLX uses Accelerate/Metal and nothing is done.
"""
import ctypes
import ctypes.util
import glob
import os
import sys

# Debian/Ubuntu's libopenblas0-pthread installs these; scripts/setup installs the package.
_CANDIDATES = [
    "/usr/lib/{arch}-linux-gnu/openblas-pthread/libblas.so.3",
    "/usr/lib/{arch}-linux-gnu/openblas-openmp/libblas.so.3",
    "/usr/lib64/libopenblas.so.0",
]
_LAPACK = {"libblas.so.3": "liblapack.so.3"}
_loaded: list[str] = []


def _arch() -> str:
    m = os.uname().machine
    return {"arm64": "aarch64"}.get(m, m)


def load_fast_blas() -> list[str]:
    """Load OpenBLAS globally (Linux only). Returns the paths loaded ([] if none/needed)."""
    if _loaded or sys.platform != "linux" or os.environ.get("SLEEPLLM_REFERENCE_BLAS") == "1":
        return _loaded
    if "mlx.core" in sys.modules:  # too late: MLX has already bound the reference BLAS
        print("sleepllm: mlx.core was imported before sleepllm, so MLX runs on its reference "
              "BLAS (~35x slower here); import sleepllm first", file=sys.stderr)
        return _loaded
    for pattern in _CANDIDATES:
        for path in glob.glob(pattern.format(arch=_arch())):
            try:
                ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
                _loaded.append(path)
                base = os.path.basename(path)
                if base in _LAPACK:
                    lapack = os.path.join(os.path.dirname(path), _LAPACK[base])
                    if os.path.exists(lapack):
                        ctypes.CDLL(lapack, mode=ctypes.RTLD_GLOBAL)
                        _loaded.append(lapack)
                return _loaded
            except OSError:
                continue
    return _loaded


class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


def blas_in_use() -> str:
    """The shared library that the process resolves `cblas_sgemm` to (what MLX calls)."""
    if sys.platform == "darwin":
        return "Accelerate (macOS)"
    import mlx.core  # noqa: F401  (make sure MLX's own libraries are in the process)

    libdl = ctypes.CDLL(ctypes.util.find_library("dl") or "libdl.so.2")
    process = ctypes.CDLL(None)
    try:
        addr = ctypes.cast(process.cblas_sgemm, ctypes.c_void_p).value
    except AttributeError:
        # Not in the global scope: MLX uses the BLAS bundled in its own wheel.
        return "reference BLAS bundled with mlx (slow)"
    info = _DlInfo()
    if not libdl.dladdr(ctypes.c_void_p(addr), ctypes.byref(info)):
        return "unknown"
    path = os.path.realpath(info.dli_fname.decode())
    if "mlx_cpu.libs" in path or "mlx/lib" in path:
        return f"reference BLAS bundled with mlx (slow): {path}"
    return path


def is_reference(name: str) -> bool:
    return name.startswith("reference")
