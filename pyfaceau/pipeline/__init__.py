"""The layer above the stages: options in, one session per input, one track per face.

- :class:`Pipeline` (``pipeline.py``): Options + loaded :class:`Models`; ``process``,
  ``stream``, ``open_stream``.
- :class:`InputSession` (``session.py``): one input and its face tracks; runs the stages of
  consecutive frames on threads.
- :class:`FaceTrack` (``track.py``): one face's tracker state and AU state.
- ``backend.py``: the AU back end (``AUBackend``, ``BackendSession``, ``FrameResult``).
- ``sources.py``: frames from videos, image folders and images.
"""
