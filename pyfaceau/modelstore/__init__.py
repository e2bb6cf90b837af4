"""Where pyfaceau's model files come from, and the proof that they are the right files.

One manifest (``manifest.json``: relative path, SHA-256, size, group) and one resolver.
Files are looked for, in order, in the folders given explicitly (``models=`` argument or
``--models``), in ``PYFACEAU_MODELS`` (both may hold several folders separated by
``os.pathsep``), then in the user data folder (``pyfaceau models path``).
"""

from .store import (
    MANIFEST,
    ModelsArg,
    ModelEntry,
    default_data_dir,
    resolve,
    search_dirs,
    verify_file,
)

__all__ = ["MANIFEST", "ModelsArg", "ModelEntry", "default_data_dir", "resolve", "search_dirs", "verify_file"]
