"""Every face of a video: one landmark tracker per face, new faces found by a detection
cadence, and identities kept by appearance (``Options.max_faces`` > 1).

:class:`MultiFaceTracker` sits between an :class:`~pyfaceau.pipeline.session.InputSession`
and its :class:`~pyfaceau.pipeline.track.FaceTrack` s (one per person). Per frame:

1. The frame's full-image face detections are computed at most once, when first asked
   for (:class:`FrameDetections`): by a tracker that wants to re-detect its face, or by
   the new-face scan.
2. Every person with a live tracker steps it on the frame. A tracker does not run the
   detector itself: its detector is a :class:`TrackDetections` view that hands it only
   the detections over its own face (a box overlapping its last landmarks), so its own
   rules (OpenFace's ``DetectLandmarksInVideo`` on the faithful path: re-detect right
   after a failure, then every 2nd failed frame) run as in a single-face video of that
   person. A detection handed to a tracker is claimed.
3. Every :data:`DETECT_EVERY` frames, while fewer than ``max_faces`` trackers are live,
   the detections claimed by no tracker and overlapping no live face are new faces. Each
   gets a fresh tracker initialised from its box; if the fit succeeds, its appearance
   descriptor (:mod:`pyfaceau.identity`) is compared with the people whose tracker is
   lost or failing: within :data:`~pyfaceau.identity.SAME_PERSON_DISTANCE` the nearest
   gets the tracker back (its old ``face_id``); otherwise a new person starts, with the
   next ``face_id`` (0, 1, 2, ... in order of first appearance).
4. Two live trackers whose faces overlap (one collapsed onto the other's face) are merged:
   the one with the lower confidence (the later-started one on a tie) is dropped and its
   person waits to be found again.
5. A tracker that has failed for more than :data:`LOST_AFTER` frames in a row is dropped
   (OpenFace un-initialises tracking after 100 failures).

Every person has a result in every frame from its first appearance on (a failed one when
it is not tracked), so its AU session (running medians, dynamic models, offline
post-processing) sees the frames a single-face run of that person would see.
"""

from __future__ import annotations

import dataclasses

import logging
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np

from ..detection.types import FaceDetections
from ..landmarks.clnf.tracking import VALIDATION_BOUNDARY
from ..identity import SAME_PERSON_DISTANCE, Gallery, face_descriptor
from .track import FaceTrack
from .types import LandmarkResult

__all__ = [
    "DETECT_EVERY",
    "LOST_AFTER",
    "FaceDetector",
    "FrameDetections",
    "MultiFaceTracker",
    "TrackDetections",
    "overlap",
]

log = logging.getLogger(__name__)

#: New-face scan cadence in frames (a full-image detection every this many frames while a
#: slot is free; OpenFace's FaceLandmarkVidMulti: 8). See docs/multiface.md for the cost
#: and the delay it gives.
DETECT_EVERY = 4
#: Failed frames in a row after which a tracker is dropped (``DetectLandmarksInVideo``
#: un-initialises tracking after more than 100).
LOST_AFTER = 100
#: Two boxes overlap when their intersection covers this fraction of the smaller one
#: (a tracker's own detections; two trackers on one face).
OVERLAP = 0.5
#: A detection is not a new face when it covers this fraction of a live face's landmark
#: box (or the box of those landmarks covers this fraction of it): a tracker lagging behind
#: a fast head movement (motion blur) still overlaps its face's detection a little
#: (multi_face.avi, fast path: 0.48), and faces seldom overlap this much otherwise.
NEW_FACE_OVERLAP = 0.2
#: Successful frames between two descriptors added to a person's gallery.
GALLERY_EVERY = 10


class FaceDetector(Protocol):
    """A full-image face detector (MTCNN or RetinaFace)."""

    def detect(self, image: np.ndarray) -> FaceDetections: ...


def landmark_box(landmarks: np.ndarray) -> np.ndarray:
    """``(4,)`` ``(x1, y1, x2, y2)`` extent of ``(68, 2)`` landmarks."""
    return np.concatenate([landmarks.min(axis=0), landmarks.max(axis=0)])


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection of two ``(x1, y1, x2, y2)`` boxes over the smaller box's area."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return float(w * h / smaller) if smaller > 0 else 0.0


class FrameDetections:
    """The current frame's full-image detections, computed at most once per frame."""

    def __init__(self, detector: FaceDetector) -> None:
        self.detector = detector
        self._takes_ignore = _takes_ignore(detector)
        self.runs = 0
        self._image: np.ndarray | None = None
        self._dets: FaceDetections | None = None
        self.claimed: set[int] = set()

    def begin(self, image: np.ndarray) -> None:
        """A new frame: forget the previous one's detections."""
        self._image, self._dets, self.claimed = image, None, set()

    @property
    def ran(self) -> bool:
        """Whether the detector has run on this frame."""
        return self._dets is not None

    def all(self) -> FaceDetections:
        """Every face in the frame (the detector runs on the first call)."""
        if self._dets is None:
            assert self._image is not None
            self._dets = self.detector.detect(self._image)
            self.runs += 1
        return self._dets

    def scan(self, tracked: list[np.ndarray]) -> FaceDetections:
        """The frame's detections for the new-face scan: :meth:`all` when a tracker
        already asked for them; otherwise the detector told to skip the ``tracked`` face
        boxes ``(x1, y1, x2, y2)`` where it can (MTCNN's ``ignore``: the faces there are not
        new, and its later stages cost most where faces are), and those stand as the
        frame's detections."""
        if self._dets is None and tracked and self._takes_ignore:
            assert self._image is not None
            self._dets = self.detector.detect(self._image, ignore=np.array(tracked))
            self.runs += 1
        return self.all()


def _takes_ignore(detector: object) -> bool:
    import inspect

    try:
        return "ignore" in inspect.signature(detector.detect).parameters  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        return False


class TrackDetections:
    """The detector a per-face tracker sees: the frame's detections over its own face.

    ``detect(image)`` returns the unclaimed detections that overlap the face's region (its
    last landmarks, or the box it was started from) and claims them. Every other attribute
    (e.g. RetinaFace's ``detect_region``, used by the fast tracker to confirm its face)
    is the real detector's.
    """

    def __init__(self, frame: FrameDetections, region: np.ndarray) -> None:
        self._frame = frame
        self.region = np.asarray(region, dtype=np.float64)

    def detect(self, image: np.ndarray) -> FaceDetections:
        dets = self._frame.all()
        keep = [
            k
            for k in range(len(dets))
            if k not in self._frame.claimed and overlap(dets.boxes[k], self.region) > OVERLAP
        ]
        self._frame.claimed.update(keep)
        return dets.select(np.array(keep, dtype=np.int64))

    def __getattr__(self, name: str) -> object:
        return getattr(self._frame.detector, name)


@dataclass
class _Person:
    track: FaceTrack
    start: int  # first frame index
    gallery: Gallery = field(default_factory=Gallery)
    view: TrackDetections | None = None  # None: no live tracker
    failures: int = 0
    since_gallery: int = 0
    started: int = 0  # frame index the live tracker started on


class MultiFaceTracker:
    """Several faces of one input, each with its own tracker and AU session.

    Parameters
    ----------
    max_faces : most faces tracked at once.
    detector : the full-image face detector shared by every face (MTCNN on the
        faithful path, RetinaFace on the fast path).
    new_tracker : ``new_tracker(detector)``: a fresh landmark tracker (the front end of
        :meth:`pyfaceau.pipeline.models.Models.new_front_end`) that detects through
        ``detector``.
    new_track : ``new_track(tracker)``: a new :class:`FaceTrack` (next ``face_id``, its
        own AU session), appended by the caller to its tracks.
    pdm, triangulation : the back end's PDM and triangulation (face alignment for the
        appearance descriptors).
    detect_every : new-face scan cadence (:data:`DETECT_EVERY`).
    lost_after : failed frames in a row after which a tracker is dropped
        (:data:`LOST_AFTER`).
    """

    def __init__(
        self,
        max_faces: int,
        detector: FaceDetector,
        new_tracker: Callable[[TrackDetections], object],
        new_track: Callable[[object], FaceTrack],
        pdm: object,
        triangulation: np.ndarray,
        *,
        detect_every: int = DETECT_EVERY,
        lost_after: int | None = None,
    ) -> None:
        self.max_faces = int(max_faces)
        self.detections = FrameDetections(detector)
        self._new_tracker = new_tracker
        self._new_track = new_track
        self._pdm, self._tri = pdm, triangulation
        self.detect_every = int(detect_every)
        self.lost_after = LOST_AFTER if lost_after is None else int(lost_after)
        self.people: list[_Person] = []
        self.stats = {"scans": 0, "new_people": 0, "found_again": 0, "merged": 0, "lost": 0}

    # -- per frame -------------------------------------------------------------------------
    def step(self, index: int, image: np.ndarray) -> list[tuple[FaceTrack, LandmarkResult]]:
        """Track every face in frame ``index`` (0-based, in order).

        Returns
        -------
        ``(track, landmarks)`` for every person seen so far, in ``face_id`` order (a
        failed result for those not tracked in this frame).
        """
        self.detections.begin(image)
        results: dict[int, LandmarkResult] = {}
        # 2. live trackers
        for k, p in enumerate(self.people):
            if p.view is None:
                continue
            r = p.track.track(image)
            results[k] = r
            self._after(p, r, image)
        # 3. new faces, while fewer than N trackers work: a failing tracker keeps looking
        # over its own face, but does not keep a face found elsewhere from being measured
        if self._working() < self.max_faces and (
            index % self.detect_every == 0 or self.detections.ran
        ):
            self.stats["scans"] += 1
            self._scan(index, image, results)
        # 4. merge trackers that collapsed onto one face
        self._merge(results)
        # 5. drop lost trackers
        for p in self.people:
            if p.view is not None and p.failures > self.lost_after:
                self._drop(p, "lost")
        return [
            (p.track, results.get(k) or LandmarkResult.failed())
            for k, p in enumerate(self.people)
        ]

    def _after(self, p: _Person, r: LandmarkResult, image: np.ndarray) -> None:
        """Book-keeping after a person's tracker ran: failures, region, gallery."""
        assert p.view is not None
        if r.success:
            p.failures = 0
            p.view.region = landmark_box(r.landmarks)
            p.since_gallery += 1
            if p.since_gallery >= GALLERY_EVERY:
                p.since_gallery = 0
                p.gallery.add(face_descriptor(image, r.landmarks, self._pdm, self._tri))
        else:
            p.failures += 1
            if np.any(r.landmarks):  # the tracker's last estimate: where it looks
                p.view.region = landmark_box(r.landmarks)

    def _scan(self, index: int, image: np.ndarray, results: dict[int, LandmarkResult]) -> None:
        regions = [p.view.region for p in self.people if p.view is not None]
        dets = self.detections.scan(regions)
        order = np.argsort(-(dets.boxes[:, 2] - dets.boxes[:, 0]), kind="stable")  # widest first
        for k in order:
            k = int(k)
            if self._working() >= self.max_faces:
                break
            box = dets.boxes[k]
            if k in self.detections.claimed or any(
                overlap(box, r) > NEW_FACE_OVERLAP for r in regions
            ):
                continue
            # a fresh tracker whose region is this box: its first step detects, and the
            # view hands it this box (and claims it)
            view = TrackDetections(self.detections, box)
            tracker = self._new_tracker(view)
            r = tracker.track(image)  # type: ignore[attr-defined]
            self.detections.claimed.add(k)
            # OpenFace counts a first detection as a success even when the validator
            # rejects the fit; a new person needs the validator's yes (a detector's
            # false positive would otherwise become a person of one frame).
            if not r.success or r.confidence <= VALIDATION_BOUNDARY:
                continue
            regions.append(landmark_box(r.landmarks))
            desc = face_descriptor(image, r.landmarks, self._pdm, self._tri)
            person = self._match(desc)
            if person is None:
                trackers = [q for q in self.people if q.view is not None]
                if len(trackers) >= self.max_faces:  # the slot of the longest failing one
                    self._drop(max(trackers, key=lambda q: q.failures), "replaced")
                track = self._new_track(tracker)
                log.debug(
                    "frame %d: new face %d (nearest person at %.3f)",
                    index + 1,
                    track.face_id,
                    min((p.gallery.distance(desc) for p in self.people), default=float("inf")),
                )
                person = _Person(track=track, start=index)
                self.people.append(person)
                self.stats["new_people"] += 1
            else:
                if person.view is not None:
                    self._drop(person, "replaced")
                person.track.tracker = tracker
                self.stats["found_again"] += 1
                log.debug(
                    "frame %d: face %d found again (distance %.3f)",
                    index + 1,
                    person.track.face_id,
                    person.gallery.distance(desc),
                )
            person.view, person.failures, person.since_gallery = view, 0, 0
            person.started = index
            view.region = landmark_box(r.landmarks)
            person.gallery.add(desc)
            results[self.people.index(person)] = r

    def _working(self) -> int:
        """Trackers that did not fail in their last frame."""
        return sum(p.view is not None and p.failures == 0 for p in self.people)

    def _match(self, desc: np.ndarray) -> _Person | None:
        """The person without a working tracker whose appearance is nearest ``desc``,
        if near enough."""
        best, best_d = None, SAME_PERSON_DISTANCE
        for p in self.people:
            if p.view is not None and p.failures == 0:
                continue  # tracked in this frame: not the new face
            d = p.gallery.distance(desc)
            if d < best_d:
                best, best_d = p, d
        return best

    def _merge(self, results: dict[int, LandmarkResult]) -> None:
        live = [
            (k, p)
            for k, p in enumerate(self.people)
            if p.view is not None and k in results and results[k].success
        ]
        for i, (ka, a) in enumerate(live):
            for kb, b in live[i + 1 :]:
                if a.view is None or b.view is None:
                    continue
                ra, rb = results[ka], results[kb]
                if overlap(landmark_box(ra.landmarks), landmark_box(rb.landmarks)) <= OVERLAP:
                    continue
                # keep the more confident fit; on a tie, the tracker started first
                key_a = (ra.confidence, -a.started)
                key_b = (rb.confidence, -b.started)
                loser, k_loser = (b, kb) if key_a >= key_b else (a, ka)
                self.stats["merged"] += 1
                log.debug("face %d collapsed onto another: dropped", loser.track.face_id)
                self._drop(loser, "merged")
                r = results[k_loser]
                results[k_loser] = dataclasses.replace(r, success=False)

    def _drop(self, p: _Person, why: str) -> None:
        if why == "lost":
            self.stats["lost"] += 1
        p.view = None
        p.track.tracker = None  # type: ignore[assignment]
        p.failures = 0
