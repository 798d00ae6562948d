"""UnixFS: import files and folders into blocks with Kubo/Helia-identical CIDs; read them back.

    for item in import_path(Path("photo.jpg"), PROFILES["unixfs-v1-2025"]):
        if isinstance(item, Block): await store.put(item.cid, item.data)
    async for chunk in cat(store, cid): ...
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .exporter import (
        BlockGetter,
        DagTooDeepError,
        DirEntry,
        NotAFileError,
        UnixFSSizeError,
        cat,
        ls,
        resolve,
    )
from .importer import (
    Added,
    DirectoryBuilder,
    FileBuilder,
    import_bytes,
    import_named_stream,
    import_path,
    import_paths,
    import_stream,
)
from .params import KUBO_DEFAULT, PROFILES, Block, Entry, ImportParams

__all__ = [
    "KUBO_DEFAULT",
    "PROFILES",
    "Added",
    "Block",
    "BlockGetter",
    "DagTooDeepError",
    "DirEntry",
    "DirectoryBuilder",
    "Entry",
    "FileBuilder",
    "ImportParams",
    "NotAFileError",
    "UnixFSSizeError",
    "cat",
    "import_bytes",
    "import_named_stream",
    "import_path",
    "import_paths",
    "import_stream",
    "ls",
    "resolve",
]

_EXPORTER = {"BlockGetter", "DagTooDeepError", "DirEntry", "NotAFileError", "UnixFSSizeError",
             "cat", "ls", "resolve"}


def __getattr__(name: str) -> Any:
    """The exporter's names, imported when first used: it pulls in trio, which the CLI's
    ``add`` (importer only) has no use for (~0.1 s of every command's start)."""
    if name in _EXPORTER:
        from . import exporter

        return getattr(exporter, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
