"""The Grad-CAM methods ``geotag explain --method`` offers: one table, importing nothing.

Name -> the pytorch-grad-cam class that computes it. :mod:`geotag.explain.cam` resolves the
classes from this table when a map is computed (``scorecam`` as a quiet subclass).
``eigencam`` is class-agnostic (the first principal component of the layer's
activations); the others explain a class.
"""

from __future__ import annotations

METHODS: dict[str, str] = {
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMPlusPlus",
    "hirescam": "HiResCAM",
    "xgradcam": "XGradCAM",
    "layercam": "LayerCAM",
    "eigencam": "EigenCAM",
    "scorecam": "ScoreCAM",
}
DEFAULT_METHOD = "gradcam"
