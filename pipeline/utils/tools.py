"""External tools and model files: where KenLM's binaries are, and how a model gets a local path.

KenLM's `lmplz`/`build_binary` are C++ programs built by `make tools`; fastText and KenLM can
only open local files, while models may live on any Beam filesystem (gs://, s3://, ...). Both
problems end here, with errors that name the tool or the file and say what to do.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS_BIN = REPO_ROOT / ".tools" / "bin"
KENLM_BIN_ENV = "CC100_KENLM_BIN"


class ToolNotFoundError(FileNotFoundError):
    """A KenLM binary is missing; the message tells the user to run `make tools`."""


class ModelFileError(RuntimeError):
    """A model file is missing, unreadable or not the expected kind; the message names the file."""


def find_tool(name: str, tools_bin: Path | None = None) -> str:
    """Path of a KenLM binary: $CC100_KENLM_BIN, then <repo>/.tools/bin, then PATH."""
    tools_bin = TOOLS_BIN if tools_bin is None else tools_bin
    looked = []
    env_dir = os.environ.get(KENLM_BIN_ENV)
    if env_dir:
        looked.append(f"${KENLM_BIN_ENV}={env_dir}")
        candidate = Path(env_dir) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    looked.append(str(tools_bin))
    candidate = tools_bin / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    looked.append("PATH")
    found = shutil.which(name)
    if found:
        return found
    raise ToolNotFoundError(
        f"KenLM tool {name!r} not found (looked in {', '.join(looked)}): run `make tools` "
        f"to build it into {tools_bin}, or set {KENLM_BIN_ENV} to the directory holding it"
    )


def is_local(path: str) -> bool:
    """True for paths the local filesystem serves (plain paths and file://)."""
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.io.localfilesystem import LocalFileSystem

    return isinstance(FileSystems.get_filesystem(path), LocalFileSystem)


def require_file(path: str, what: str) -> None:
    """Raise ModelFileError unless `path` exists on its Beam filesystem."""
    from apache_beam.io.filesystems import FileSystems

    try:
        exists = FileSystems.exists(path)
    except Exception as e:  # unknown scheme, missing credentials, ...
        raise ModelFileError(f"{path}: cannot access {what} ({e})") from e
    if not exists:
        raise ModelFileError(f"{path}: {what} not found")
    if is_local(path) and os.path.isdir(path):
        raise ModelFileError(f"{path}: {what} is a directory, expected a file")


def local_copy(path: str, what: str = "model file") -> str:
    """A local path with the content of `path`: the path itself when local, else a temp copy.

    fastText and KenLM open files by name, so a gs:// model is copied once (per worker, in
    DoFn.setup) to a temp file that lives as long as the process.
    """
    require_file(path, what)
    if is_local(path):
        return path[len("file://") :] if path.startswith("file://") else path
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    suffix = "-" + path.rstrip("/").rsplit("/", 1)[-1]
    fd, local = tempfile.mkstemp(prefix="cc100-model-", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as out, FileSystems.open(
            path, compression_type=CompressionTypes.UNCOMPRESSED
        ) as src:
            shutil.copyfileobj(src, out, length=1 << 20)
    except Exception as e:
        os.unlink(local)
        raise ModelFileError(f"{path}: cannot copy {what} to a local file ({e})") from e
    return local
