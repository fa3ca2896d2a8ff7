"""bvdm-data: synthetic, fully annotated cell microscopy videos as a PyTorch data source.

Every dataset yields the clip dict of :mod:`bvdm_data.clip`.
"""

__version__ = "0.1.0"

from bvdm_data.cache import LMDBClips
from bvdm_data.clip import check_clip, collate_clips, restore_contract
from bvdm_data.ctc import CTCClips
from bvdm_data.errors import BundleError, BVDMDataError, ClipError, CTCFormatError
from bvdm_data.follow import FollowedCache
from bvdm_data.mix import MixedStream
from bvdm_data.photometric import Photometric, augment_photometric
from bvdm_data.stream import BVDMStream

__all__ = [
    "__version__",
    "BVDMDataError",
    "BVDMStream",
    "BundleError",
    "CTCClips",
    "CTCFormatError",
    "FollowedCache",
    "LMDBClips",
    "MixedStream",
    "Photometric",
    "augment_photometric",
    "ClipError",
    "check_clip",
    "collate_clips",
    "restore_contract",
]
