"""``golfplan data``: build the embedded dataset (or its CaseOps variant), fetch the challenge's
shards, or convert shards to CaseOps."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from golfplan.cli.options import EXIT_OK, positive_int
from golfplan.core.errors import GolfplanError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="build the embedded dataset or fetch the challenge's shards")
    dsub = p.add_subparsers(dest="data_cmd", required=True)
    b = dsub.add_parser("build", help="build the embedded default dataset (Python's own docs) now")
    b.add_argument("--vocab-size", type=positive_int, default=1024)
    b.add_argument("--caseops", action="store_true", help="its CaseOps variant (the case_ops plugin's data)")
    b.add_argument("--force", action="store_true", help="rebuild even when cached")
    b.set_defaults(func=cmd_data_build)
    i = dsub.add_parser("info", help="where the embedded dataset lives and what it holds")
    i.add_argument("--vocab-size", type=positive_int, default=1024)
    i.add_argument("--caseops", action="store_true", help="its CaseOps variant")
    i.set_defaults(func=cmd_data_info)
    c = dsub.add_parser("caseops", help="convert shards (the challenge's sp8192) to CaseOps shards + byte sidecar")
    c.add_argument("--data", required=True, help="folder of the shards to convert")
    c.add_argument("--tokenizer", required=True, help="the SentencePiece model they were made with")
    c.add_argument("--out", required=True, help="folder for the CaseOps shards, sidecar and tokenizer.model")
    c.add_argument("--caseops-tokenizer", help="the CaseOps tokenizer to use (the record's "
                                                "fineweb_8192_bpe_lossless_caps_caseops_v1_reserved.model); "
                                                "default: train one on the converted text")
    c.add_argument("--vocab-size", type=positive_int, default=0, help="of a tokenizer trained here (default: the source's)")
    c.add_argument("--tokenizer-docs", type=positive_int, default=20_000, help="training documents it is trained on")
    c.add_argument("--train-shards", type=positive_int, default=0, help="training shards to convert (default: all)")
    c.set_defaults(func=cmd_data_caseops)
    f = dsub.add_parser("fetch", help="download the challenge's FineWeb shards (needs huggingface_hub)")
    f.add_argument("--variant", default="sp1024", help="tokenizer variant: sp1024, sp4096, sp8192")
    f.add_argument("--train-shards", type=positive_int, default=1, help="number of training shards (100M tokens each)")
    f.add_argument("--dest", default="data", help="local folder (default: ./data)")
    f.add_argument("--repo", default="willdepueoai/parameter-golf", help="Hugging Face dataset repo")
    f.add_argument("--remote-prefix", default="datasets", help="folder of the repo holding the data")
    f.set_defaults(func=cmd_data_fetch)


def _transform(args: argparse.Namespace):
    from golfplan.plugins.case_ops import TRANSFORM

    return TRANSFORM if args.caseops else None


def cmd_data_build(args: argparse.Namespace) -> int:
    from golfplan.core.data import corpus

    transform = _transform(args)
    path = corpus.build(args.vocab_size, force=args.force, transform=transform,
                        log=lambda m: print(m, file=sys.stderr))  # standard output: the JSON alone
    print(json.dumps({"path": str(path)} | corpus.meta(args.vocab_size, transform.name if transform else ""), indent=2))
    return EXIT_OK


def cmd_data_info(args: argparse.Namespace) -> int:
    from golfplan.core.data import corpus

    variant = "caseops" if args.caseops else ""
    if not corpus.is_built(args.vocab_size, variant):
        print(f"not built yet: {corpus.dataset_dir(args.vocab_size, variant)} (golfplan data build --vocab-size "
              f"{args.vocab_size}{' --caseops' if variant else ''})")
        return EXIT_OK
    print(json.dumps({"path": str(corpus.dataset_dir(args.vocab_size, variant))} | corpus.meta(args.vocab_size, variant),
                     indent=2))
    return EXIT_OK


def cmd_data_caseops(args: argparse.Namespace) -> int:
    from golfplan.core.data import corpus
    from golfplan.plugins.case_ops import TRANSFORM

    out = Path(args.out)
    target = Path(args.caseops_tokenizer) if args.caseops_tokenizer else None
    if target is not None and not target.is_file():
        raise GolfplanError(f"--caseops-tokenizer {target}: no such file")
    meta = corpus.convert(Path(args.data), Path(args.tokenizer), TRANSFORM, out, target, args.vocab_size,
                          args.tokenizer_docs, args.train_shards)
    print(json.dumps({"path": str(out)} | meta, indent=2))
    print(f"done: golfplan run --plugins case_ops --data {out} --tokenizer {out / 'tokenizer.model'}")
    return EXIT_OK


VARIANT_TOKENIZERS = {"sp1024": "fineweb_1024_bpe.model", "sp4096": "fineweb_4096_bpe.model",
                      "sp8192": "fineweb_8192_bpe.model"}


def cmd_data_fetch(args: argparse.Namespace) -> int:
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise GolfplanError("data fetch needs huggingface_hub: pip install 'golfplan[fetch]'") from None
    if args.variant not in VARIANT_TOKENIZERS:
        from golfplan.core.errors import closest

        raise GolfplanError(f"unknown variant '{args.variant}'{closest(args.variant, VARIANT_TOKENIZERS)}")
    dest = Path(args.dest)
    ds = f"fineweb10B_{args.variant}"
    files = [f"datasets/{ds}/fineweb_val_000000.bin"]
    files += [f"datasets/{ds}/fineweb_train_{i:06d}.bin" for i in range(args.train_shards)]
    files += [f"tokenizers/{VARIANT_TOKENIZERS[args.variant]}"]
    for rel in files:
        remote = f"{args.remote_prefix}/{rel}" if args.remote_prefix else rel
        print(f"fetching {remote} ...", flush=True)
        try:
            local = hf_hub_download(repo_id=args.repo, repo_type="dataset", filename=remote, local_dir=str(dest / "_hf"))
        except Exception as e:  # network, auth or missing-file errors from the hub
            raise GolfplanError(f"could not fetch {remote} from {args.repo}: {type(e).__name__}: {str(e).splitlines()[0]}") from None
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(local, target)
    print(f"done: golfplan run --data {dest / 'datasets' / ds} --tokenizer {dest / 'tokenizers' / VARIANT_TOKENIZERS[args.variant]}")
    return EXIT_OK


# ---- main -------------------------------------------------------------------------
