"""UnixFS: import files and folders into blocks with Kubo/Helia-identical CIDs; read them back.

    for item in import_path(Path("photo.jpg"), PROFILES["unixfs-v1-2025"]):
        if isinstance(item, Block): await store.put(item.cid, item.data)
    async for chunk in cat(store, cid): ...
"""

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
    KUBO_DEFAULT,
    PROFILES,
    Added,
    Block,
    DirectoryBuilder,
    Entry,
    FileBuilder,
    ImportParams,
    import_bytes,
    import_named_stream,
    import_path,
    import_paths,
    import_stream,
)

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
