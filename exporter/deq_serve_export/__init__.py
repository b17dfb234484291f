"""deq_serve_export: export a PyTorch Deep Equilibrium Model as a deq-serve bundle.

    from deq_serve_export import export_bundle

See docs/guides/export-your-deq.md in the deq-serve repository. Needs torch (Debian: python3-torch) and
onnx (python3-onnx); works offline.
"""
from .export import (ExportError, check_onnx, export_bundle, fold_norms, parity_solver_for, run_solver,
                     sha256_file, stability_check, store_fp16)
from .adapters import deq_transformer_lm
from .solvers import anderson, broyden, fixed_point, residuals, solve, spectral_radius

__version__ = "0.1.0"
__all__ = ["ExportError", "anderson", "broyden", "check_onnx", "deq_transformer_lm", "export_bundle", "fixed_point", "fold_norms",
           "parity_solver_for", "residuals", "run_solver", "sha256_file", "solve", "spectral_radius",
           "stability_check", "store_fp16"]
