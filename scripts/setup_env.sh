#!/usr/bin/env bash
# Set up stark_ros on a bare Linux machine (no ROS 2 install): a virtual environment with ROS 2
# Kilted from PyPI and the package built and installed by ament_cmake from the same wheels, the
# way colcon installs it on a ROS 2 machine. pip brings only the dependencies (setup.py's lists);
# CMake is the one installer of the package (Python modules, interfaces, executable, share files).
# Idempotent: each step is skipped while its inputs are unchanged; the install step always runs and
# takes seconds, so re-running this script is how a source edit reaches the environment.
#
#   scripts/setup_env.sh [--runtime] [--need-shared]
#
#   (default)   the full environment (.venv): + torch, onnx, training, export, the tests, colcon
#   --runtime   the runtime environment (.venv-runtime): node, demo, evaluation, bag replay; no torch
#
# Environment: STARK_ROS_VENV (default .venv, or .venv-runtime with --runtime),
# PYTHON (default: python3.11, else python3).
# Afterwards: `source <venv>/bin/stark_ros_env.sh` gives a shell with rclpy and the package.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REQUIRED_PYTHON="3.11"
NEED_SHARED=0
PURPOSE=full
for arg in "$@"; do
  case "$arg" in
    --need-shared) NEED_SHARED=1 ;;
    --runtime) PURPOSE=runtime ;;
    *) echo "setup: unknown option $arg" >&2; exit 2 ;;
  esac
done
if [ "$PURPOSE" = runtime ]; then DEFAULT_VENV="$ROOT/.venv-runtime"; else DEFAULT_VENV="$ROOT/.venv"; fi
VENV="${STARK_ROS_VENV:-$DEFAULT_VENV}"
case "$VENV" in /*) ;; *) VENV="$ROOT/$VENV" ;; esac
# One CMake build per environment: each installs into its own prefix.
BUILD_DIR="$VENV/.stark_ros_build"
STAMPS="$VENV/.stark_ros_stamps"

say() { printf '\033[1msetup:\033[0m %s\n' "$*"; }
fail() { printf '\033[1;31msetup failed:\033[0m %s\n' "$*" >&2; exit 1; }

# ------------------------------------------------------------------ preconditions
PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
  if command -v "python$REQUIRED_PYTHON" >/dev/null 2>&1; then PYTHON="python$REQUIRED_PYTHON"; else PYTHON=python3; fi
fi
command -v "$PYTHON" >/dev/null 2>&1 || fail "no Python interpreter '$PYTHON' on PATH; install Python $REQUIRED_PYTHON."
PY_VERSION="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
[ "$PY_VERSION" = "$REQUIRED_PYTHON" ] || fail "Python $REQUIRED_PYTHON is required (the ROS 2 wheels on PyPI are built for it); '$PYTHON' is $PY_VERSION. Set PYTHON=/path/to/python$REQUIRED_PYTHON."
for tool in cmake make cc c++; do
  command -v "$tool" >/dev/null 2>&1 || fail "'$tool' is missing: install it (Debian/Ubuntu: apt-get install cmake build-essential)."
done
if [ "$NEED_SHARED" = 1 ]; then
  SHARED="${STARK_ROS_SHARED:-$ROOT/../shared}"
  [ -d "$SHARED/data/sot" ] || fail "the shared data folder is missing: expected $SHARED/data/sot (clone the project with 'shared' beside it, or set STARK_ROS_SHARED)."
fi

hash_of() { (cd "$ROOT" && cat "$@" 2>/dev/null | sha256sum | cut -c1-16); }
stamp_ok() { [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }
stamp_set() { mkdir -p "$STAMPS"; echo "$2" > "$STAMPS/$1"; }

# ------------------------------------------------------------------ virtual environment
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
  say "creating virtual environment $VENV"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV" || fail "could not create a virtual environment (Debian/Ubuntu: apt-get install python3-venv)."
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)

# ------------------------------------------------------------------ Python dependencies
DEPS_HASH="$(hash_of setup.py scripts/setup_env.sh)-$PURPOSE"
if ! stamp_ok deps "$DEPS_HASH"; then
  say "installing the $PURPOSE environment's dependencies and the ROS 2 wheels (setup.py requirements(\"$PURPOSE\")) — a few minutes the first time"
  rm -f "$STAMPS/deps" "$STAMPS/interfaces"
  mkdir -p "$STAMPS"
  # setuptools below 80: colcon-core (full environment) requires it; one version for both purposes.
  "${PIP[@]}" install --upgrade pip "setuptools<80" wheel || fail "pip could not upgrade itself (is PyPI reachable?)"
  # setup.py is the one list of dependencies; read it without building or installing the package
  # (CMake installs it below). torch is pinned there, so pip takes the CPU build, never a CUDA one.
  REQUIREMENTS="$STAMPS/requirements.txt"
  "$VENV/bin/python" -c 'import runpy, sys; print("\n".join(runpy.run_path(sys.argv[1], run_name="stark_ros_requirements")["requirements"](sys.argv[2])))' \
      "$ROOT/setup.py" "$PURPOSE" > "$REQUIREMENTS" || fail "could not read the requirements from setup.py"
  # setup.py asks for opencv-contrib-python-headless; an older venv's plain OpenCV wheel would
  # share its cv2 folder, and whichever is removed later breaks the other.
  "${PIP[@]}" uninstall -y opencv-python-headless opencv-python >/dev/null 2>&1 || true
  "${PIP[@]}" install -r "$REQUIREMENTS" \
    || fail "pip could not install the dependencies (see the messages above); re-run this script after fixing."
  # ros-rosidl-parser drags in lark-parser, which overwrites the 'lark' module rosidl needs.
  "${PIP[@]}" install --force-reinstall --no-deps lark || fail "could not reinstall lark"
  stamp_set deps "$DEPS_HASH"
fi

# ------------------------------------------------------------------ interfaces + package
export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
export PATH="$VENV/bin:$PATH"
IFACE_HASH="$(hash_of CMakeLists.txt package.xml msg/*.msg srv/*.srv)"
if ! stamp_ok interfaces "$IFACE_HASH" || [ ! -f "$BUILD_DIR/Makefile" ]; then
  say "building the package (interfaces from msg/ and srv/) with ament_cmake — about a minute"
  rm -rf "$BUILD_DIR"
  mkdir -p "$BUILD_DIR"
  (cd "$BUILD_DIR" && cmake "$ROOT" -DCMAKE_INSTALL_PREFIX="$VENV" -DPython3_EXECUTABLE="$VENV/bin/python" \
      -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release > "$BUILD_DIR/configure.log" 2>&1) \
    || { tail -30 "$BUILD_DIR/configure.log" >&2; fail "cmake could not configure the interfaces (log: $BUILD_DIR/configure.log)"; }
  (cd "$BUILD_DIR" && make -j"$(nproc)" > "$BUILD_DIR/build.log" 2>&1) \
    || { tail -30 "$BUILD_DIR/build.log" >&2; fail "building the interfaces failed (log: $BUILD_DIR/build.log)"; }
  stamp_set interfaces "$IFACE_HASH"
fi
# Always re-install: cheap, and it copies edited Python sources, launch/ and config/ into the venv.
MANIFEST="$BUILD_DIR/install_manifest.txt"
PREVIOUS="$STAMPS/previous_install_manifest.txt"
if [ -f "$MANIFEST" ]; then cp "$MANIFEST" "$PREVIOUS"; else rm -f "$PREVIOUS"; fi
(cd "$BUILD_DIR" && make install > "$BUILD_DIR/install.log" 2>&1) \
  || { tail -30 "$BUILD_DIR/install.log" >&2; fail "installing the package failed (log: $BUILD_DIR/install.log)"; }
# The installed package is exactly what this build installs: remove what an earlier install put
# there and this one no longer does (a deleted or renamed module would otherwise still import),
# and a pip install of the package made by an earlier version of this script.
"$VENV/bin/python" - "$VENV" "$MANIFEST" "$PREVIOUS" <<'EOF' || fail "could not remove the files of an earlier install"
import shutil
import sys
from pathlib import Path

venv, manifest, previous = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
installed = {str(Path(p).resolve()) for p in manifest.read_text().split()}
stale = {str(Path(p).resolve()) for p in previous.read_text().split()} if previous.is_file() else set()
for dist_info in venv.glob("lib/python*/site-packages/stark_ros-*.dist-info"):
    for line in (dist_info / "RECORD").read_text().splitlines():
        stale.add(str((dist_info.parent / line.rsplit(",", 2)[0]).resolve()))
    shutil.rmtree(dist_info)
for path in sorted(stale - installed):
    Path(path).unlink(missing_ok=True)
EOF

# ------------------------------------------------------------------ environment file
cat > "$VENV/bin/stark_ros_env.sh" <<EOF
# Source this file for a shell with the stark_ros environment (rclpy over Fast DDS, the package).
export VIRTUAL_ENV="$VENV"
export PATH="$VENV/bin:\$PATH"
export AMENT_PREFIX_PATH="$VENV\${AMENT_PREFIX_PATH:+:\$AMENT_PREFIX_PATH}"
export RMW_IMPLEMENTATION="\${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
# \`python -m stark_ros.X\` must use the installed package (which holds the generated msg/srv
# modules), never a source tree in the current directory: do not put the cwd on sys.path.
export PYTHONSAFEPATH=1
EOF

# From / so the source tree (which has no generated msg/srv modules) cannot shadow the install.
(cd / && "$VENV/bin/python" - <<EOF) || fail "the environment was built but does not import (see the error above)"
import os
os.environ.setdefault("AMENT_PREFIX_PATH", "$VENV")
import rclpy  # noqa: F401
from stark_ros.msg import TrackedObjectArray  # noqa: F401
from stark_ros.srv import StartTracking  # noqa: F401
import stark_ros.core.geometry  # noqa: F401
EOF
say "ready: $VENV (source $VENV/bin/stark_ros_env.sh)"
