"""Who is who: appearance descriptors of aligned faces, to give a face that is lost and
found again its old ``face_id`` (:mod:`pyfaceau.pipeline.faces`)."""

from .descriptor import (
    DESCRIPTOR_CELLS,
    SAME_PERSON_DISTANCE,
    Gallery,
    colour_descriptor,
    descriptor_distance,
    face_descriptor,
    lbp_descriptor,
)

__all__ = [
    "DESCRIPTOR_CELLS",
    "SAME_PERSON_DISTANCE",
    "Gallery",
    "colour_descriptor",
    "descriptor_distance",
    "face_descriptor",
    "lbp_descriptor",
]
