"""Cell Tracking Challenge data: read, write, validate, and serve as clips."""

from bvdm_data.ctc.clips import CTCClips
from bvdm_data.ctc.sequence import CTCSequence, FrameFolder, LabelFolder, open_sequence
from bvdm_data.ctc.tracks import read_track_file, write_track_file
from bvdm_data.ctc.validate import Problem, validate_path
from bvdm_data.ctc.writer import write_ctc_result, write_ctc_sequence

__all__ = [
    "CTCClips",
    "CTCSequence",
    "FrameFolder",
    "LabelFolder",
    "Problem",
    "open_sequence",
    "read_track_file",
    "validate_path",
    "write_ctc_result",
    "write_ctc_sequence",
    "write_track_file",
]
