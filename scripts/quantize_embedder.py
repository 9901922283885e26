"""Derive the dynamic-int8 MiniLM from the pinned int8-weight file and check its sha256."""

# python scripts/quantize_embedder.py                 # into the cache the embedder reads
# python scripts/quantize_embedder.py --out model.onnx
#
# Run it at build or deploy time to spare the service the ~2 s derivation at its first
# start, or to check that this machine's onnx still makes the pinned file (exit 1 if
# not, printing the sha256 it made: after an intended change to derive_dynq8_model,
# that is the new MINILM_DYNQ8_SHA256, and MINILM_DYNQ8_MODEL_ID must change with it).

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere

from core import embeddings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", type=Path, default=None,
                        help="the int8-weight model.onnx (default: the installed package's)")
    parser.add_argument("--out", type=Path, default=None,
                        help="where to write it (default: the embedder's cache directory)")
    args = parser.parse_args(argv)

    source_path = args.source or embeddings._default_minilm_path()
    source = embeddings._read_verified_model(source_path)
    model = embeddings.derive_dynq8_model(source)
    actual = hashlib.sha256(model).hexdigest()
    print(f"source  {source_path} (sha256 {embeddings.MINILM_SHA256})")
    print(f"derived {embeddings.MINILM_DYNQ8_MODEL_ID}: {len(model):,} bytes, sha256 {actual}")
    if actual != embeddings.MINILM_DYNQ8_SHA256:
        print(f"NOT the pinned file (MINILM_DYNQ8_SHA256 = {embeddings.MINILM_DYNQ8_SHA256})")
        return 1
    if args.out is not None:
        args.out.write_bytes(model)
        print(f"written to {args.out}")
    else:
        # The embedder's own loader: it keeps the file where it will look for it.
        embeddings._read_dynq8_model(source_path, embeddings.default_model_cache_dir())
        print(f"cached in {embeddings.default_model_cache_dir()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
