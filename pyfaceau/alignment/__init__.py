"""OpenFace's similarity alignment of the face for AU analysis (``AlignFaceMask``)."""

from .align import align_face, alignment_warp_matrix, face_mask

__all__ = ["align_face", "alignment_warp_matrix", "face_mask"]
