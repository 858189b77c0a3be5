"""sleepllm: a local chat model that remembers what you tell it in its weights."""
from sleepllm.blas import load_fast_blas

__version__ = "0.1.0"

load_fast_blas()  # must happen before the first `import mlx.core`
