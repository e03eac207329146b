"""Coverage-guided fuzzing (atheris / libFuzzer) of the image decode path: header walk, pixel cap, decode.

    make bench-fuzz        # both harnesses, 10 minutes each, report in bench/results/reliability/

or one harness by hand:

    .venv/bin/python tests/fuzz/fuzz_decode.py build/fuzz/decode -max_total_time=600 \\
        -rss_limit_mb=2048 -timeout=10 -print_final_stats=1

A crash is any exception other than the two the contract maps to result codes (20006, 20007); libFuzzer
also stops on hangs (-timeout) and memory growth (-rss_limit_mb). Inputs worth keeping go to
tests/fuzz/corpus/decode/, which the default suite replays (test_fuzz_regressions.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

# Native code and numpy first, uninstrumented: there is nothing to learn from their Python wrappers.
import cv2  # noqa: F401
import numpy  # noqa: F401

with atheris.instrument_imports():
    from tests.fuzz.properties import decode_property


def main() -> None:
    from tests.fuzz.hostile import seeds

    corpus = Path(sys.argv[1]) if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else None
    if corpus is not None:
        corpus.mkdir(parents=True, exist_ok=True)
        for name, data in seeds().items():
            if len(data) < 200_000:
                (corpus / f"seed-{name}").write_bytes(data)
    atheris.Setup(sys.argv, decode_property)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
