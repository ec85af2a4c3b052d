"""python -m stark_ros.bench NAME [options]: run one benchmark (each has its own --help)."""

import importlib
import pkgutil
import sys

import stark_ros.bench


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    names = sorted(m.name for m in pkgutil.iter_modules(stark_ros.bench.__path__) if not m.name.startswith("_"))
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in names:
        print(f"usage: python -m stark_ros.bench {{{','.join(names)}}} [options]  (NAME --help for details)",
              file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    return importlib.import_module(f"stark_ros.bench.{argv[0]}").main(argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main())
