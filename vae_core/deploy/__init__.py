"""Export: a model or checkpoint of either backend as ONNX, a TF SavedModel, LiteRT or torch.export files, each
verified in its own runtime against the NumPy reference forward (`vae_core.model.forward`).

`formats` (the formats, their tensors, what writes and runs each), `verify` (the check against the reference),
`runtimes` (onnxruntime, LiteRT, and the frameworks' loaders through the backends), `manifest` (export.json), `api`
(`export`: checks, staging, rename). The frameworks' code is in `backends/<name>/export.py`.
"""
from vae_core.deploy.api import ExportResult, export
from vae_core.deploy.formats import FORMATS
from vae_core.deploy.manifest import read_manifest
from vae_core.deploy.verify import TOLERANCE, ExportVerificationError, Verification

__all__ = ["FORMATS", "TOLERANCE", "ExportResult", "ExportVerificationError", "Verification", "export",
           "read_manifest"]
