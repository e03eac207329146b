"""Coverage-guided fuzzing (atheris / libFuzzer) of the request body path: our form reader on top of
Starlette's multipart and urlencoded parsers (python-multipart).

    .venv/bin/python tests/fuzz/fuzz_multipart.py build/fuzz/multipart -max_total_time=600 \\
        -rss_limit_mb=2048 -timeout=10 -print_final_stats=1

Input layout: the first line is the Content-Type header, the rest is the body. Any exception other than
an ImageCloudError (which the API turns into a result code) is a crash.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

# The service layer uninstrumented: database and vision coverage would only dilute the signal.
import imagecloud.service.service  # noqa: F401

with atheris.instrument_imports():
    import python_multipart  # noqa: F401
    import starlette.formparsers  # noqa: F401

    from tests.fuzz.properties import form_property

SEEDS = {
    "multipart": b"multipart/form-data; boundary=XyZ\n"
    b'--XyZ\r\nContent-Disposition: form-data; name="username"\r\n\r\nalice\r\n'
    b'--XyZ\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n'
    b"Content-Type: image/jpeg\r\n\r\n\xff\xd8\xff\xe0rest\r\n--XyZ--\r\n",
    "urlencoded": b"application/x-www-form-urlencoded\nusername=alice&secretkey=k%20y&channel=c&x=%ff",
    "quoted_boundary": b'multipart/form-data; boundary="a b"\n--a b\r\n'
    b"Content-Disposition: form-data; name=\"m\"; filename*=UTF-8''%e2%82%ac.jpg\r\n\r\nx\r\n--a b--\r\n",
}


def main() -> None:
    corpus = Path(sys.argv[1]) if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else None
    if corpus is not None:
        corpus.mkdir(parents=True, exist_ok=True)
        for name, data in SEEDS.items():
            (corpus / f"seed-{name}").write_bytes(data)
    atheris.Setup(sys.argv, form_property)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
