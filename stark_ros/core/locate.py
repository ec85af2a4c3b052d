"""Where the installed package's files are: the one place that answers it for every tool.

Three routes put the package's files somewhere different:

- **ROS 2 (ament)**: ``colcon build``, or ``scripts/setup_env.sh`` (ament_cmake on the PyPI ROS 2
  wheels). The ament index knows the package; ``share/stark_ros`` holds launch/, config/,
  models/default, msg/ and package.xml, ``lib/stark_ros`` the executables (where ``ros2 run`` and
  launch_ros look).
- **pip** (``pip install .``: runtime, evaluation, export, training; no interfaces, no node): no
  ament index entry; the same share files are recorded in the distribution's own file list
  (setup.py's ``data_files``), which also tells where a ``--user`` or ``--prefix`` install put them.
- **a source checkout** (the package imported from the repository itself): the files beside it.

They are asked in that order, so an ament install always wins, as it must for ``ros2 launch``.
Standard library only (ament_index_python is optional): every layer may import this module.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from pathlib import Path

PACKAGE = "stark_ros"
DISTRIBUTION = "stark_ros"
NODE_EXECUTABLE = "tracker_node"
# A file every route installs at the root of the share folder (and a checkout has at its root).
SHARE_MARKER = "package.xml"
# What a checkout has beside the stark_ros package folder (the marker alone could be any package's).
_CHECKOUT_FILES = (SHARE_MARKER, "CMakeLists.txt", "setup.py")


class NotInstalledError(FileNotFoundError):
    """A file of the package is missing on every route; the message says where it looked."""


def _ament_prefix() -> Path | None:
    """The install prefix the ament index has for the package, or None (no index, not in it)."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_prefix
    except ImportError:  # the pip route on a machine without ROS 2
        return None
    try:
        return Path(get_package_prefix(PACKAGE))
    except (PackageNotFoundError, OSError):  # not in the index / AMENT_PREFIX_PATH unset
        return None


def _pip_share() -> Path | None:
    """The share folder recorded by a pip install of the package (its data_files), or None."""
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None
    suffix = ("share", PACKAGE, SHARE_MARKER)
    for entry in dist.files or ():
        if tuple(entry.parts[-len(suffix):]) == suffix:
            return Path(dist.locate_file(entry)).resolve().parent
    # The ament_cmake route also leaves metadata (rosidl's egg-info) but records no share files.
    return None


def source_root() -> Path | None:
    """The repository this module runs from, when it runs from a source checkout (else None)."""
    root = Path(__file__).resolve().parents[2]
    return root if all((root / name).is_file() for name in _CHECKOUT_FILES) else None


def _share_candidates() -> list[tuple[str, Path]]:
    out = []
    prefix = _ament_prefix()
    if prefix is not None:
        out.append(("ament index", prefix / "share" / PACKAGE))
    pip_share = _pip_share()
    if pip_share is not None:
        out.append(("pip install", pip_share))
    root = source_root()
    if root is not None:
        out.append(("source checkout", root))
    return out


def route() -> str:
    """Which route the share files come from: 'ament index', 'pip install' or 'source checkout'."""
    return _first_share()[0]


def _first_share() -> tuple[str, Path]:
    candidates = _share_candidates()
    for name, folder in candidates:
        if (folder / SHARE_MARKER).is_file():
            return name, folder
    looked = ", ".join(f"{folder} ({name})" for name, folder in candidates) or "nowhere: no route applies"
    raise NotInstalledError(
        f"the {PACKAGE} share folder was not found (looked in: {looked}). Install the package: "
        "`make setup` (bare machine), `colcon build` + `source install/setup.bash` (ROS 2), or `pip install .`")


def share_dir() -> Path:
    """The package's share folder (launch/, config/, models/, msg/, package.xml)."""
    return _first_share()[1]


def share_file(*parts: str) -> Path:
    """A file or folder under the share folder, e.g. ``share_file("config", "tracker.yaml")``."""
    path = share_dir().joinpath(*parts)
    if not path.exists():
        raise NotInstalledError(f"{'/'.join(parts)} is not in the {PACKAGE} share folder {share_dir()} "
                                f"(route: {route()}); re-install the package")
    return path


def params_file() -> Path:
    """The node's installed parameters file (config/tracker.yaml)."""
    return share_file("config", "tracker.yaml")


def launch_file() -> Path:
    return share_file("launch", "tracker.launch.py")


def msg_dir() -> Path:
    """The package's .msg definitions."""
    return share_file("msg")


def models_dir() -> Path:
    """The folder of the models installed with the package (``default`` among them)."""
    return share_file("models")


def executable(name: str = NODE_EXECUTABLE) -> Path:
    """An executable of the package, where ``ros2 run stark_ros NAME`` finds it (``lib/stark_ros``).

    Only the ament routes install executables: the node needs the generated interfaces, which
    only the ament_cmake build makes."""
    prefix = _ament_prefix()
    if prefix is not None:
        path = prefix / "lib" / PACKAGE / name
        if path.is_file():
            return path
        raise NotInstalledError(f"{name} is not installed in {path.parent} (the ament index's prefix for {PACKAGE})")
    raise NotInstalledError(
        f"the {name} executable was not found: the ament index does not know {PACKAGE} (is the environment sourced? "
        "`source .venv/bin/stark_ros_env.sh` after `make setup`, or `source install/setup.bash` after `colcon "
        "build`). A pip install has no node: the node needs the interfaces only the ament_cmake build generates.")


def file_sha256(path) -> str:
    """sha256 of a file's bytes (read in 1 MiB chunks): what identifies a checkpoint or a model file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
