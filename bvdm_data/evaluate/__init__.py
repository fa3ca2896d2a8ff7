"""Evaluation: realism and temporal measures (CTC SEG/TRA and the downstream protocol to come)."""

from bvdm_data.evaluate.temporal import flicker, match_by_overlap

__all__ = ["flicker", "match_by_overlap"]
