"""The CAM family's registry names (issue 11): ``--method NAME`` in the CLI and ``gradcam evaluate``."""
from __future__ import annotations

from .attribution import FACTORIES as ATTRIBUTIONS
from .eigen import EigenCAM, EigenGradCAM
from .elementwise import GradCAMElementWise
from .factorization import DeepFeatureFactorization
from .finer import FinerCAM
from .fullgrad import FullGrad
from .gradients import GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM
from .kernel_pca import KPCACAM
from .lrp import LRP
from .multilayer import RefineCAM, SegEigenCAM
from .perturbation import RISE, AblationCAM, ScoreCAM
from .random_cam import RandomCAM
from .registry import register

FAMILY = {
    "gradcam++": GradCAMPlusPlus, "xgradcam": XGradCAM, "hirescam": HiResCAM, "layercam": LayerCAM,
    "eigencam": EigenCAM, "eigengradcam": EigenGradCAM, "scorecam": ScoreCAM, "ablationcam": AblationCAM,
    "rise": RISE, "random": RandomCAM,
    "gradcam-elementwise": GradCAMElementWise, "kpcacam": KPCACAM, "finercam": FinerCAM,     "dff": DeepFeatureFactorization, "refinecam": RefineCAM, "segeigencam": SegEigenCAM,
}
for _name, _cls in FAMILY.items():
    register(_name, _cls)
# FullGrad uses every biased layer: like the pixel methods, its factory takes (and does not use) the layer.
register("fullgrad", lambda model, layer="auto", **kw: FullGrad(model, **kw))
register("lrp", lambda model, layer="auto", **kw: LRP(model, **kw))  # needs the lrp extra (zennit)
for _name, _factory in ATTRIBUTIONS.items():
    register(_name, _factory)
