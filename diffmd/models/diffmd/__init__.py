"""DiffMD: the EGT score network (egt.py, sbf.py), the conditional VE SDE (sde.py), the samplers
(samplers.py) and the registered model (model.py, ``@register_model("diffmd")``)."""

from diffmd.models.diffmd.model import DiffMD

__all__ = ["DiffMD"]
