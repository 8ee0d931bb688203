"""In-memory tar archives: the image build context and the training scripts uploaded to a container."""

from __future__ import annotations

import io
import tarfile


def tar_bytes(files: dict[str, bytes], *, mtime: int = 0, prefix: str = "") -> bytes:
    """``files`` (relative path -> content) as an uncompressed USTAR archive, sorted by name.

    Shell scripts are executable, everything else is 0644. A fixed ``mtime`` keeps the archive
    identical for identical files (Docker's layer cache holds across builds).
    """
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(files):
            data = files[name]
            info = tarfile.TarInfo(f"{prefix}{name}")
            info.size = len(data)
            info.mode = 0o755 if name.endswith(".sh") else 0o644
            info.mtime = mtime
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()
