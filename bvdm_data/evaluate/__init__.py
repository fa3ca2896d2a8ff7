"""Evaluation: realism and temporal measures (CTC SEG/TRA and the downstream protocol to come)."""

from bvdm_data.evaluate.ctc import evaluate_ctc
from bvdm_data.evaluate.temporal import flicker, match_by_overlap

__all__ = ["evaluate_ctc", "flicker", "match_by_overlap"]
