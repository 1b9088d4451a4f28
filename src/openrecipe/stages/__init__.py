"""Stage kinds. Importing this package registers every built-in kind."""

from openrecipe.stages import clean, cpt, evaluate, generate, report, sft  # noqa: F401  (registers the kinds)
from openrecipe.stages.base import STAGE_KINDS, StageConfig, StageContext, StageResult

__all__ = ["STAGE_KINDS", "StageConfig", "StageContext", "StageResult"]
