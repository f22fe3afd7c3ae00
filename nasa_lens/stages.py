"""Kept for old imports: the stage cache moved to :mod:`nasa_lens.study.stages`."""
from nasa_lens.study.stages import *  # noqa: F401,F403
from nasa_lens.study.stages import CHECKPOINTS, DONE_FILE, StageContext, StageOutput, StageStore, safe_name, stage_key  # noqa: F401
