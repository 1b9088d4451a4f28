"""Stage kinds. Importing this package registers every built-in kind."""

from openrecipe.stages import artifacts, clean, cpt, evaluate, generate, parity, report, sft  # noqa: F401 (registers)
from openrecipe.stages.base import STAGE_KINDS, StageConfig, StageContext, StageResult

__all__ = ["STAGE_KINDS", "StageConfig", "StageContext", "StageResult"]
